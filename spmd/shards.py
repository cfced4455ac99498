"""Input shards: many tasks' payloads in one object, with an index of byte ranges.

    offset 0   b"SPMDSHD2"              magic
           8   n (uint64)               tasks in this shard
          16   (start[j], end[j]) × n   absolute byte range of task j's payload (uint64 each)
           …   payload 0, payload 1, ... each starting at a multiple of 64 bytes

A task reads 16 bytes of the index and then its own payload: two range reads, whatever
the size of the shard. Payloads are frames (``spmd.codec``) whose buffers are aligned
within the frame; each frame starts aligned in the shard, so a read of the whole shard (or a
memory map of it) keeps the buffers aligned too.
"""
from __future__ import annotations

import struct
from typing import Sequence

from .codec import frame_size, padding
from .stores.object_store import ObjectStore

MAGIC = b"SPMDSHD2"
_HEADER = struct.Struct("<8sQ")
_RANGE = struct.Struct("<QQ")


def pack_parts(payloads: Sequence) -> list:
    """One shard holding payloads in order, as parts for ``ObjectStore.put_parts``.

    A payload is bytes or a list of bytes-like parts (a frame); nothing is joined or copied.
    """
    frames = [[p] if isinstance(p, (bytes, bytearray, memoryview)) else list(p) for p in payloads]
    n = len(frames)
    offset = _HEADER.size + _RANGE.size * n
    ranges, body = [], []
    for frame in frames:
        gap = padding(offset)
        if gap:
            body.append(bytes(gap))
        offset += gap
        size = frame_size(frame)
        ranges.append((offset, offset + size))
        body.extend(frame)
        offset += size
    index = b"".join(_RANGE.pack(*r) for r in ranges)
    return [_HEADER.pack(MAGIC, n) + index, *body]


def pack(payloads: Sequence) -> bytes:
    """One shard holding payloads in order, as one bytes object."""
    return b"".join(pack_parts(payloads))


def read(store: ObjectStore, key: str, index: int) -> memoryview:
    """Payload number index of the shard at key, by two range reads, the second a view that a
    store of files maps copy-on-write: the task's arrays are built on the map, writable, and
    what the task writes to them never reaches the shard."""
    start_at = _HEADER.size + _RANGE.size * index
    start, end = _RANGE.unpack(store.get(key, start_at, start_at + _RANGE.size))
    return store.get_mapped(key, start, end)


def plan(sizes: Sequence[int], *, target_bytes: int = 64 * 2**20) -> int:
    """Tasks per shard: as few shards as keep each near target_bytes."""
    n = len(sizes)
    n_shards = max(1, min(n, -(-sum(sizes) // target_bytes)))
    return max(1, -(-n // n_shards))
