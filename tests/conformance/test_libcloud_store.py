"""The store part of the kit on spmd.stores.LibcloudStore over apache-libcloud's local driver.

LibcloudStore is the generic ObjectStore a plugin gets for any libcloud storage driver. The
worker opens a store from its URL, so a plugin adds a scheme and ``from_url`` (the few lines
of ``LocalDriverStore`` below) and registers it with ``spmd_register_stores``; here the
registration is made directly in the plugin registry for the length of each test.
"""
from __future__ import annotations

import pytest

from spmd import plugins
from spmd.stores import LibcloudStore
from spmd.testing import ObjectStoreContract


class LocalDriverStore(LibcloudStore):
    """LibcloudStore on libcloud's local driver, opened by ``libcloud-local:///path``."""

    scheme = "libcloud-local"

    def __init__(self, root: str):
        from libcloud.storage.drivers.local import LocalStorageDriver
        super().__init__(LocalStorageDriver(root), "conformance", url=f"{self.scheme}://{root}")

    @classmethod
    def from_url(cls, url: str) -> "LocalDriverStore":
        return cls(url.split("://", 1)[1])


class TestLibcloudStore(ObjectStoreContract):
    @pytest.fixture
    def spmd_store(self, tmp_path, monkeypatch):
        plugins.manager()
        monkeypatch.setitem(plugins._stores, LocalDriverStore.scheme, plugins.Entry(
            LocalDriverStore.scheme, f"{__name__}:LocalDriverStore", "", "tests"))
        root = tmp_path / "libcloud"
        root.mkdir()
        return LocalDriverStore(str(root))
