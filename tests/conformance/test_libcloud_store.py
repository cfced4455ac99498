"""The store part of the kit on spmd.stores.libcloud.LibcloudStore, the generic ObjectStore a plugin gets
for any apache-libcloud storage driver, here over libcloud's local driver. (Its S3-compatible
MinIO driver against moto's S3 server passed the same way and pages correctly, by hand,
but 1,200 puts of three requests each take a minute there, so it is not run.)

The worker opens a store from its URL, so a plugin adds a scheme and ``from_url`` (the few
lines of the subclass below) and registers it with ``spmd_register_stores``; here that
registration is made directly in the plugin registry for the length of each test.
"""
from __future__ import annotations

import pytest

from spmd import plugins
from spmd.stores.libcloud import LibcloudStore
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


class TestLibcloudLocalDriver(ObjectStoreContract):
    @pytest.fixture
    def spmd_store(self, tmp_path, monkeypatch):
        registered(monkeypatch, LocalDriverStore)
        root = tmp_path / "libcloud"
        root.mkdir()
        return LocalDriverStore(str(root))

    @pytest.mark.xfail(strict=True, reason=(
        "spmd/stores/libcloud.py LibcloudStore.put() over libcloud's local driver writes the file in "
        "place, so a reader can see part of an object: ObjectStore requires an atomic put "
        "(cloud drivers' uploads are atomic; spmd.stores.directory.DirectoryStore writes and renames). "
        "A property of that driver, stated in spmd/stores/libcloud.py's docstring; this test keeps it "
        "visible and fails if the driver changes"))
    def test_store_put_is_atomic_for_readers(self, spmd_store, spmd_scratch):
        super().test_store_put_is_atomic_for_readers(spmd_store, spmd_scratch)
