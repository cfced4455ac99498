"""Bounded task logs: a log keeps its last ``limit`` bytes and says where it was cut.

A task that prints in a loop must neither fill the disk nor make the scheduler or the client
read hundreds of megabytes. Every log is written through ``CappedLog`` (the warm container's
server writes a task's output through it) or ``append`` (the scheduler adds an attempt to a
task's log in the store); both cut the file to its last ``limit`` bytes once it has grown half
as much again, copying in chunks, so no step holds more than ``CHUNK`` bytes of a log. ``tail``
and ``read_part`` read from the end or from an offset without loading the whole file.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .units import format_bytes

DEFAULT_LIMIT = 64 * 2**20  # bytes of a task's log kept (the last ones); config key log_limit
CHUNK = 1 << 20
LINE_START = 4096  # a cut moves this far at most to begin the kept part at a line
NOTE = "spmd: the log was cut here: {dropped} earlier bytes dropped (log_limit {limit})\n"
_NOTE = re.compile(rb"^spmd: the log was cut here: (\d+) earlier bytes dropped")


def _slack(limit: int) -> int:
    """How far a log may grow past its limit before it is cut (cutting copies the kept part)."""
    return max(limit // 2, CHUNK)


def cut(path: str | os.PathLike, limit: int, mode: int = 0o600) -> int:
    """Keep the last ``limit`` bytes of the file (from a line start within LINE_START bytes), after a line saying how
    much was dropped in all; returns the bytes dropped now. The file is replaced atomically."""
    path = Path(path)
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        if size <= limit:
            return 0
        head = source.read(200)
        earlier = _NOTE.match(head)  # cut before: the new note counts all that went, not itself
        before, note = (int(earlier[1]), head.index(b"\n") + 1) if earlier else (0, 0)
        source.seek(size - limit)
        first = source.read(min(CHUNK, limit))
        newline = first.find(b"\n")
        skip = newline + 1 if 0 <= newline < min(LINE_START, len(first) - 1) else 0
        dropped = size - limit + skip - note  # the task's bytes: the old note is no output
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as target:
                total = dropped + before
                target.write(NOTE.format(dropped=total, limit=format_bytes(limit)).encode())
                target.write(first[skip:])
                while chunk := source.read(CHUNK):
                    target.write(chunk)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return dropped


class CappedLog:
    """A log file written in appends that keeps its last ``limit`` bytes."""

    def __init__(self, path: str | os.PathLike, limit: int = DEFAULT_LIMIT, *, truncate: bool = True):
        self.path, self.limit = str(path), limit
        self.fd = self._open(truncate)
        self.size = os.fstat(self.fd).st_size

    def _open(self, truncate: bool = False) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        return os.open(self.path, flags, 0o600)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)
        if self.size > self.limit + _slack(self.limit):
            os.close(self.fd)
            cut(self.path, self.limit)
            self.fd = self._open()
            self.size = os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def append(path: str | os.PathLike, data: bytes, limit: int = DEFAULT_LIMIT) -> None:
    """Append data to a log file (made 0600), then cut it to its last ``limit`` bytes if it
    has grown past them by half again. data itself is at most about a limit (an attempt's log)."""
    log = CappedLog(path, limit, truncate=False)
    try:
        log.write(data)
    finally:
        log.close()


def read_part(path: str | os.PathLike, start: int = 0, size: int | None = None) -> tuple[bytes, int]:
    """(at most ``size`` bytes of the file from ``start``, negative: from the end; the file's
    length). A missing file is (b"", 0)."""
    try:
        handle = open(path, "rb")
    except (FileNotFoundError, IsADirectoryError):
        return b"", 0
    with handle:
        length = os.fstat(handle.fileno()).st_size
        begin = max(0, length + start) if start < 0 else min(start, length)
        handle.seek(begin)
        return handle.read(-1 if size is None else size), length


def read_kept(path: str | os.PathLike, limit: int) -> bytes:
    """The log cut to its last ``limit`` bytes (the note of what was dropped first), read.
    A log within its limit (nearly every one) is opened once and read as it is."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size <= limit:
                return handle.read()
        cut(path, limit)
        with open(path, "rb") as handle:
            return handle.read(limit + 4096)
    except (FileNotFoundError, IsADirectoryError):
        return b""


def tail(path: str | os.PathLike, nbytes: int) -> bytes:
    """The last ``nbytes`` of the file, read from its end (b"" if it is missing)."""
    return read_part(path, -nbytes)[0]
