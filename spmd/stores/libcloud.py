"""ObjectStore over any apache-libcloud storage driver (S3, GCS, Azure Blobs, MinIO, ...).

A plugin gets a working store by subclassing ``LibcloudStore`` with a scheme and a
``from_url`` that builds the driver; it need not write the operations. The cloud drivers'
uploads are atomic, as ``ObjectStore.put`` requires; libcloud's *local* driver writes files
in place, so for a directory use ``spmd.stores.directory.DirectoryStore``, which renames.
"""
from __future__ import annotations

from typing import Iterator

from ..errors import ObjectNotFound, StoreError
from .object_store import ObjectStore


class LibcloudStore(ObjectStore):
    """Keys are object names in one libcloud container (bucket)."""

    def __init__(self, driver, container: str, *, url: str):
        self.driver = driver
        self.container_name = container
        self._url = url
        self._container = None

    @property
    def url(self) -> str:
        return self._url

    @property
    def container(self):
        from libcloud.storage.types import ContainerDoesNotExistError
        if self._container is None:
            try:
                self._container = self.driver.get_container(self.container_name)
            except ContainerDoesNotExistError:
                self._container = self.driver.create_container(self.container_name)
        return self._container

    def put(self, key: str, data: bytes) -> None:
        try:
            self.driver.upload_object_via_stream(iter([data]), self.container, key)
        except Exception as exc:
            raise StoreError(f"cannot write {key!r} to {self.url}: {exc}") from exc

    def _object(self, key: str):
        from libcloud.storage.types import ContainerDoesNotExistError, ObjectDoesNotExistError
        try:
            return self.driver.get_object(self.container_name, key)
        except (ObjectDoesNotExistError, ContainerDoesNotExistError) as exc:
            raise ObjectNotFound(key) from exc

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        obj = self._object(key)
        if start is None and end is None:
            return b"".join(self.driver.download_object_as_stream(obj))
        start = start or 0
        end = obj.size if end is None else min(end, obj.size)
        if start >= end:  # drivers reject empty and out-of-range ranges
            return b""
        return b"".join(self.driver.download_object_range_as_stream(obj, start, end))

    def list(self, prefix: str) -> Iterator[str]:
        names = (obj.name for obj in self.driver.iterate_container_objects(self.container, prefix=prefix))
        return iter(sorted(names))

    def delete(self, key: str) -> None:
        try:
            self.driver.delete_object(self._object(key))
        except ObjectNotFound:
            pass
