"""ImageRegistry: where a task image lives, whether a tag is there already, and publishing it.

Images are built on the client by ``spmd.images.build``; the registry only answers "is this
content-hash tag there?" and "make this local image available to the queue".
"""
from __future__ import annotations

from abc import ABC, abstractmethod


class ImageRegistry(ABC):
    """A place task images are published to and pulled from."""

    @abstractmethod
    def reference(self, tag: str) -> str:
        """The full image reference the queue runs for tag, e.g. ``spmd-task:3f2a...``."""

    @abstractmethod
    def exists(self, tag: str) -> bool:
        """Whether the image with this tag is already published."""

    @abstractmethod
    def publish(self, local_image: str, tag: str) -> str:
        """Make the locally built image available under tag; returns its reference."""
