"""ObjectStore: bytes by key. Functions, inputs, outputs, logs and manifests of jobs live here.

A backend implements five primitives; everything else is built on them here.
``put`` must be atomic: a reader sees the whole old object, the whole new one, or none.
``put_file``/``get_file`` stream files of any size; the defaults here keep memory bounded,
and a backend overrides them with its native transfer (file copy, S3 multipart).

Four conveniences have a default here that a store may replace with a faster way:
``put_parts`` (write a frame's parts without joining them first), ``get_view`` (bytes as a
memoryview of a buffer a value can be built on, so large buffers are not copied again),
``get_mapped`` (the same, but a store of files may map the range instead of reading it) and
``list_after`` (keys after a given one, S3's ``StartAfter``, so a watcher does not re-list
what it has seen).

    >>> store.put("jobs/j1/manifest.json", b"{}")
    >>> list(store.list("jobs/j1/"))
    ['jobs/j1/manifest.json']
"""
from __future__ import annotations

import json
import mmap
import os
import tempfile
from abc import ABC, abstractmethod
from typing import Any, Iterator, Sequence


class ObjectStore(ABC):
    """Bytes by key, with range reads and prefix listing."""

    #: URL scheme the store answers to (``file``, ``s3``, ...); the worker opens stores by URL.
    scheme: str = ""

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL a task uses to open this same store (see ``spmd_register_stores``)."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write data under key, atomically replacing any object there."""

    @abstractmethod
    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """The bytes under key, or only ``[start, end)``; ObjectNotFound when missing."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Every key that starts with prefix, sorted; pages are fetched as needed."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object under key; no error when it is already gone."""

    # Conveniences built on the primitives; a store may override them to go faster.

    def put_parts(self, key: str, parts: Sequence) -> None:
        """Write the concatenation of parts (bytes-like) under key, atomically, like ``put``.

        The default joins them (one copy); a store that can write them one after the other
        (a file) overrides this so large buffers are written from where they are.
        """
        self.put(key, b"".join(parts))

    def get_view(self, key: str, start: int | None = None, end: int | None = None) -> memoryview:
        """Like ``get``, as a memoryview; a store may read into a writable buffer of its own
        (arrays unpickled from it are then built on it, not copied). Writing to the view
        never changes the object."""
        return memoryview(self.get(key, start, end))

    def get_mapped(self, key: str, start: int | None = None, end: int | None = None) -> memoryview:
        """Like ``get_view``; a store of files maps the range copy-on-write instead of reading it
        (nothing is read before it is used; writing to the view never changes the object). Only
        for an object nobody checks or rewrites in place while the view lives: a task's input."""
        return self.get_view(key, start, end)

    def list_after(self, prefix: str, start_after: str = "") -> Iterator[str]:
        """The keys of ``list(prefix)`` that sort after start_after ("" for all of them)."""
        return (key for key in self.list(prefix) if key > start_after)

    #: bytes per ranged read of the default ``get_file``
    transfer_chunk = 8 * 2**20

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        """Write the file at path under key, atomically, without reading it into memory.

        The default hands ``put`` a read-only memory map: its pages are the file's own, read
        and dropped by the OS as needed, so the process holds no copy of the file.
        """
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                self.put(key, b"")
                return
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                self.put(key, view)  # type: ignore[arg-type]

    def get_file(self, key: str, path: str | os.PathLike) -> None:
        """Write the object under key to the file at path (replaced atomically), in chunks;
        ObjectNotFound when missing."""
        target = os.fspath(path)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(target)), prefix=".spmd-")
        try:
            with os.fdopen(fd, "wb") as handle:
                start = 0
                while True:
                    chunk = self.get(key, start, start + self.transfer_chunk)
                    handle.write(chunk)
                    start += len(chunk)
                    if len(chunk) < self.transfer_chunk:
                        break
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def exists(self, key: str) -> bool:
        from ..errors import ObjectNotFound
        try:
            self.get(key, 0, 1)
        except ObjectNotFound:
            return False
        return True

    def put_json(self, key: str, value: Any) -> None:
        self.put(key, json.dumps(value, indent=1, sort_keys=True).encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.get(key))

    def keep_in_memory(self, prefix: str, size: int) -> bool:
        """Keep the ``size`` bytes about to be written under prefix in memory (a tmpfs), not on
        disk, where this store can and has room: objects needed only while a job runs on this
        machine, which live until ``release_memory(prefix)`` or the machine restarts. False:
        they go where every object goes (the default)."""
        return False

    def release_memory(self, prefix: str) -> None:
        """Free what ``keep_in_memory(prefix)`` kept in memory (nothing by default)."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under prefix; returns how many."""
        keys = list(self.list(prefix))
        for key in keys:
            self.delete(key)
        return len(keys)

    def check_owner(self) -> None:
        """Refuse (StoreError), before a map reads or writes anything, a store this user may
        read but not run jobs in: another user's, shared for reading. By default: nothing."""

    def exposed(self, key: str) -> list[str]:
        """Who other than the store's owner may read or write the object, in the store's own
        terms (a file's or folder's mode, an ACL grant); empty when it is private. The kit's
        PrivacyContract asks it of every object of a job. A store that cannot tell says so."""
        raise NotImplementedError(f"{type(self).__name__} cannot say who may read its objects; "
                                  "implement ObjectStore.exposed for spmd.testing.PrivacyContract")
