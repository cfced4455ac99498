"""ObjectStore: bytes by key. Functions, inputs, outputs, logs and manifests of jobs live here.

A backend implements five primitives; everything else is built on them here.
``put`` must be atomic: a reader sees the whole old object, the whole new one, or none.

    >>> store.put("jobs/j1/manifest.json", b"{}")
    >>> list(store.list("jobs/j1/"))
    ['jobs/j1/manifest.json']
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, Iterator


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

    # Conveniences built on the primitives.

    def exists(self, key: str) -> bool:
        from .errors import ObjectNotFound
        try:
            self.get(key, 0, 1)
        except ObjectNotFound:
            return False
        return True

    def put_json(self, key: str, value: Any) -> None:
        self.put(key, json.dumps(value, indent=1, sort_keys=True).encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.get(key))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under prefix; returns how many."""
        keys = list(self.list(prefix))
        for key in keys:
            self.delete(key)
        return len(keys)
