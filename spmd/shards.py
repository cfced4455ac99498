"""Input shards: many tasks' payloads in one object, with an index of byte offsets.

    offset 0   b"SPMDSHD1"              magic
           8   n (uint64)               tasks in this shard
          16   off[0] .. off[n]         absolute offsets; task j is bytes [off[j], off[j+1])
     16+8(n+1) payload 0, payload 1, ...

A task reads 16 bytes of the index and then its own payload: two range reads, whatever
the size of the shard.
"""
from __future__ import annotations

import struct
from typing import Sequence

from .object_store import ObjectStore

MAGIC = b"SPMDSHD1"
_HEADER = struct.Struct("<8sQ")


def pack(payloads: Sequence[bytes]) -> bytes:
    """One shard holding payloads in order."""
    n = len(payloads)
    offset = _HEADER.size + 8 * (n + 1)
    offsets = [offset]
    for payload in payloads:
        offset += len(payload)
        offsets.append(offset)
    return b"".join([_HEADER.pack(MAGIC, n), struct.pack(f"<{n + 1}Q", *offsets), *payloads])


def read(store: ObjectStore, key: str, index: int) -> bytes:
    """Payload number index of the shard at key, by two range reads."""
    start_at = _HEADER.size + 8 * index
    start, end = struct.unpack("<2Q", store.get(key, start_at, start_at + 16))
    return store.get(key, start, end)


def plan(sizes: Sequence[int], *, target_bytes: int = 64 * 2**20) -> int:
    """Tasks per shard: as few shards as keep each near target_bytes."""
    n = len(sizes)
    n_shards = max(1, min(n, -(-sum(sizes) // target_bytes)))
    return max(1, -(-n // n_shards))
