"""The store part of the kit on spmd.stores.LibcloudStore, the generic ObjectStore a plugin gets
for any apache-libcloud storage driver, here over libcloud's local driver. (Its S3-compatible
MinIO driver against moto's S3 server shows the same two LibcloudStore findings and pages
correctly, but 1,200 puts of three requests each take a minute there, so it is not run.)

The worker opens a store from its URL, so a plugin adds a scheme and ``from_url`` (the few
lines of the subclass below) and registers it with ``spmd_register_stores``; here that
registration is made directly in the plugin registry for the length of each test.
"""
from __future__ import annotations

import pytest

from spmd import plugins
from spmd.stores import LibcloudStore
from spmd.testing import ObjectStoreContract


class LocalDriverStore(LibcloudStore):
    """libcloud's local driver: ``libcloud-local:///path``."""

    scheme = "libcloud-local"

    def __init__(self, root: str):
        from libcloud.storage.drivers.local import LocalStorageDriver
        super().__init__(LocalStorageDriver(root), "conformance", url=f"{self.scheme}://{root}")

    @classmethod
    def from_url(cls, url: str) -> "LocalDriverStore":
        return cls(url.split("://", 1)[1])


def registered(monkeypatch, cls) -> None:
    plugins.manager()
    monkeypatch.setitem(plugins._stores, cls.scheme, plugins.Entry(
        cls.scheme, f"{__name__}:{cls.__name__}", "", "tests"))


class LibcloudStoreFindings(ObjectStoreContract):
    """Where LibcloudStore breaks the contract whatever the driver (see the reasons)."""

    @pytest.mark.xfail(strict=True, reason=(
        "spmd/stores.py LibcloudStore._object(): before the first put the container does not "
        "exist, and driver.get_object raises libcloud's ContainerDoesNotExistError, which "
        "escapes get()/delete() instead of ObjectNotFound (so attach() of an unknown job on a "
        "fresh bucket raises a libcloud error, not JobNotFound)"))
    def test_store_missing_object_and_idempotent_delete(self, spmd_store, spmd_scratch):
        super().test_store_missing_object_and_idempotent_delete(spmd_store, spmd_scratch)

    @pytest.mark.xfail(strict=True, reason=(
        "spmd/stores.py LibcloudStore.get(): a range past the end is passed to the driver "
        "unclamped; exists() reads [0, 1), which on an empty object raises (local driver: "
        "ValueError 'end_bytes is larger than file size'; S3: LibcloudError 416) instead of "
        "returning True; clamp end to obj.size and return b'' when start >= size"))
    def test_store_empty_object(self, spmd_store, spmd_scratch):
        super().test_store_empty_object(spmd_store, spmd_scratch)


class TestLibcloudLocalDriver(LibcloudStoreFindings):
    @pytest.fixture
    def spmd_store(self, tmp_path, monkeypatch):
        registered(monkeypatch, LocalDriverStore)
        root = tmp_path / "libcloud"
        root.mkdir()
        return LocalDriverStore(str(root))

    @pytest.mark.xfail(strict=True, reason=(
        "spmd/stores.py LibcloudStore.put() over libcloud's local driver writes the file in "
        "place, so a reader can see part of an object: ObjectStore requires an atomic put "
        "(cloud drivers' uploads are atomic; spmd_local.store.LocalStore writes and renames). "
        "LibcloudStore's docstring lists 'local' among its drivers without saying so"))
    def test_store_put_is_atomic_for_readers(self, spmd_store, spmd_scratch):
        super().test_store_put_is_atomic_for_readers(spmd_store, spmd_scratch)
