"""ImageRegistry alone: the reference of a tag, whether a tag is there, publishing an image.

The image published here is a tiny one made on the local Docker engine from a one-file
tar (no base image, no network), tagged ``spmd-conformance/tiny:<random>``; both it and
the local tag of the published reference are removed afterwards.

A backend whose ``uses_images`` is False has no registry: these tests then check that
asking for one fails clearly (NotImplementedError) rather than returning something half
working that a job could come to depend on.
"""
from __future__ import annotations

import io
import secrets
import tarfile

import pytest

import spmd

from .fixtures import BackendFixtures

TINY_REPOSITORY = "spmd-conformance/tiny"


def _no_registry(backend: spmd.Backend) -> bool:
    """True (after checking it fails clearly) when the backend runs tasks without images."""
    if type(backend).uses_images:
        return False
    with pytest.raises(NotImplementedError):
        backend.make_registry()
    return True


class ImageRegistryContract(BackendFixtures):
    """What every ImageRegistry does for ``spmd.images.build.ensure``."""

    @pytest.fixture
    def spmd_tiny_image(self):
        """A local image of a few bytes; yields its reference and removes it afterwards."""
        from spmd import docker_engine
        engine = docker_engine.client()
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            content = b"spmd conformance kit\n"
            info = tarfile.TarInfo("spmd-conformance.txt")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        version = secrets.token_hex(4)
        engine.api.import_image_from_data(data.getvalue(), repository=TINY_REPOSITORY, tag=version)
        reference = f"{TINY_REPOSITORY}:{version}"
        made = [reference]
        yield reference, made
        for name in made:
            try:
                engine.images.remove(name, force=True)
            except Exception:
                pass  # never there, or already gone

    def test_registry_reference_names_the_tag(self, spmd_backend):
        if _no_registry(spmd_backend):
            return
        registry = spmd_backend.registry
        tag = f"conformance-{secrets.token_hex(4)}"
        reference = registry.reference(tag)
        assert isinstance(reference, str) and reference.endswith(f":{tag}")
        assert registry.reference(tag) == reference  # stable: no call decides it
        assert registry.reference("other") != reference

    def test_registry_unknown_tag_does_not_exist(self, spmd_backend):
        if _no_registry(spmd_backend):
            return
        assert spmd_backend.registry.exists(f"conformance-absent-{secrets.token_hex(6)}") is False

    def test_registry_publish_then_exists(self, spmd_backend, spmd_fresh_backend, request):
        if _no_registry(spmd_backend):
            return
        local, made = request.getfixturevalue("spmd_tiny_image")
        registry = spmd_backend.registry
        tag = f"conformance-{secrets.token_hex(4)}"
        assert registry.exists(tag) is False
        reference = registry.publish(local, tag)
        made.append(reference)
        assert reference == registry.reference(tag)
        assert registry.exists(tag) is True
        assert spmd_fresh_backend().registry.exists(tag) is True  # seen by another client
        assert registry.publish(local, tag) == reference  # publishing again is harmless
        assert registry.exists(tag) is True
