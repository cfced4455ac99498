"""The local image registry: the Docker daemon's own image store. Publishing is tagging."""
from __future__ import annotations

from spmd import docker_engine
from spmd.images.build import LOCAL_REPOSITORY
from spmd.image_registry import ImageRegistry


class DaemonRegistry(ImageRegistry):
    """Images live in the local Docker engine under ``spmd-task:<tag>``."""

    def reference(self, tag: str) -> str:
        return f"{LOCAL_REPOSITORY}:{tag}"

    def exists(self, tag: str) -> bool:
        return docker_engine.image_exists(self.reference(tag))

    def publish(self, local_image: str, tag: str) -> str:
        reference = self.reference(tag)
        if local_image != reference:
            repository, _, version = reference.rpartition(":")
            docker_engine.client().images.get(local_image).tag(repository, version)
        return reference
