"""Payload codec: cloudpickle for functions, inputs and results; remote exceptions carried back.

Inputs and results travel as *frames*: pickle protocol 5 with out-of-band buffers, so a
numpy array (anything exporting a contiguous buffer to pickle 5) is written as its raw bytes,
never copied into the pickle stream::

    offset 0   b"SPMDFRM1"  n_buffers (uint32)  pickle length (uint64)
          20   n_buffers × (offset, length) (uint64 each), offsets from the frame's start
           …   the pickle stream (buffers replaced by references)
           …   each buffer, starting at a multiple of 64 bytes

``dumps_frame`` returns the frame as a list of parts (the buffers are views of the caller's
memory), which ``ObjectStore.put_parts`` writes without joining them. ``loads_frame`` takes
any bytes-like view, e.g. the buffer the local store read the object into, and hands the
unpickler slices of it: the arrays are built on that memory, not copied. ``Pickled`` holds one value pickled
alone (a task's result), whose buffers travel out of band in the frame around it.

The user's own modules that the task image does not hold (a file beside the script, a
package under development) are pickled by value, so they travel with the function.
A remote exception comes back as itself, with ``__cause__`` set to a RemoteTraceback
holding the task's traceback text (as concurrent.futures.process does).
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
import sysconfig
import traceback
import types
from typing import Any, Callable, Sequence

import cloudpickle

from .errors import RemoteError, SerializationError

_IMAGE_PACKAGES = {"spmd"}  # with the chosen backend's (plugins.task_runtime), given by the caller


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in a task; set as the exception's cause."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {sys.base_prefix, sys.prefix, sys.exec_prefix}
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


def local_modules(extra_image_packages: set[str] = frozenset()) -> list[types.ModuleType]:
    """Top-level modules imported here from outside any installed location (user code)."""
    roots = _installed_roots()
    skip = _IMAGE_PACKAGES | set(extra_image_packages)
    found = []
    for name, module in list(sys.modules.items()):
        if "." in name or name in skip or name == "__main__" or module is None:
            continue
        path = getattr(module, "__file__", None)
        if not path:
            continue
        real = os.path.realpath(path)
        if not real.startswith(roots):
            found.append(module)
    return found


def register_local_modules(extra_image_packages: set[str] = frozenset()) -> list[str]:
    """Pickle the user's own modules by value; returns their names."""
    names = []
    for module in local_modules(extra_image_packages):
        try:
            cloudpickle.register_pickle_by_value(module)
            names.append(module.__name__)
        except ValueError:
            pass
    return names


def _culprit(func: Callable) -> str | None:
    """The name of a global or closure variable of func that cannot be pickled, if one."""
    code = getattr(func, "__code__", None)
    if code is None:
        return None
    candidates: dict[str, Any] = {}
    globals_ = getattr(func, "__globals__", {})
    for name in code.co_names:
        if name in globals_:
            candidates[name] = globals_[name]
    for name, cell in zip(code.co_freevars, getattr(func, "__closure__", None) or ()):
        try:
            candidates[name] = cell.cell_contents
        except ValueError:
            continue
    for name, value in candidates.items():
        try:
            cloudpickle.dumps(value)
        except Exception:
            return name
    return None


def dumps_function(func: Callable) -> bytes:
    """The pickled function; SerializationError naming the culprit when it cannot be pickled."""
    try:
        return cloudpickle.dumps(func)
    except Exception as exc:
        name = getattr(func, "__qualname__", repr(func))
        culprit = _culprit(func)
        detail = f" because it uses {culprit!r}, which" if culprit else ", which"
        raise SerializationError(
            f"function {name!r} cannot be sent to the tasks{detail} cannot be pickled: {exc}. "
            "Create such objects (locks, open files, clients, connections) inside the function",
            what=culprit or name) from exc


def dumps_calls(calls: list[tuple[tuple, dict]], items: Sequence[int]) -> list:
    """The calls of one task as frame parts; SerializationError naming the item that cannot be
    pickled."""
    try:
        return dumps_frame(calls)
    except Exception:
        for offset, call in enumerate(calls):
            try:
                cloudpickle.dumps(call)
            except Exception as exc:
                index = items[offset]
                raise SerializationError(
                    f"input item {index} ({_short(call)}) cannot be pickled: {exc}. "
                    "Pass plain data (paths, ids, numbers, arrays) and open resources inside the "
                    "function", what=f"item {index}") from exc
        raise


def _short(call: tuple[tuple, dict]) -> str:
    args, kwargs = call
    text = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return text if len(text) <= 80 else text[:77] + "..."


def capture_exception(exc: BaseException) -> dict:
    """A picklable record of an exception raised in a task."""
    try:
        pickled = cloudpickle.dumps(exc)
        cloudpickle.loads(pickled)
    except Exception:
        pickled = None
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "pickled": pickled,
    }


def rebuild_exception(record: dict) -> BaseException:
    """The exception a task raised, with its remote traceback as ``__cause__``."""
    exc: BaseException
    try:
        exc = cloudpickle.loads(record["pickled"]) if record["pickled"] else None
    except Exception:
        exc = None
    if exc is None:
        exc = RemoteError(record["type"], record["message"])
    exc.__cause__ = RemoteTraceback('\n"""\n' + record["traceback"] + '"""')
    return exc


def dumps(value: Any) -> bytes:
    """value pickled in-band (small records: manifests' neighbours, exception records)."""
    return cloudpickle.dumps(value)


def loads(data: bytes) -> Any:
    """The value of ``dumps`` or of a frame (``loads_frame``), told apart by the frame's magic."""
    return loads_frame(data)


# -- frames: pickle protocol 5 with out-of-band buffers -----------------------------------

FRAME_MAGIC = b"SPMDFRM1"
ALIGN = 64
_FRAME_HEAD = struct.Struct("<8sIQ")
_SPAN = struct.Struct("<QQ")


def _raw(buffer: pickle.PickleBuffer) -> memoryview:
    try:
        return buffer.raw()
    except BufferError:  # not contiguous: the exporter did not promise one block of memory
        return memoryview(bytes(buffer))


def padding(size: int) -> int:
    """Bytes that bring size up to the next multiple of ALIGN."""
    return -size % ALIGN


def dumps_frame(value: Any) -> list:
    """value as a frame, in parts: header, pickle stream, then each out-of-band buffer aligned.

    The buffers are views of value's own memory: nothing is copied until the parts are written.
    """
    buffers: list[pickle.PickleBuffer] = []
    stream = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [_raw(b) for b in buffers]
    head_size = _FRAME_HEAD.size + _SPAN.size * len(raws)
    offset = head_size + len(stream)
    spans, body = [], []
    for raw in raws:
        gap = padding(offset)
        if gap:
            body.append(bytes(gap))
        offset += gap
        spans.append((offset, raw.nbytes))
        body.append(raw)
        offset += raw.nbytes
    head = _FRAME_HEAD.pack(FRAME_MAGIC, len(raws), len(stream)) + b"".join(
        _SPAN.pack(*span) for span in spans)
    return [head, stream, *body]


def frame_size(parts: Sequence) -> int:
    """How many bytes the parts hold together."""
    return sum(memoryview(p).nbytes for p in parts)


def loads_frame(data) -> Any:
    """The value of a frame held in data (bytes, bytearray, memoryview, mmap).

    Arrays are built on data's memory when it is writable (the local store reads into a
    bytearray); a read-only buffer (bytes) is copied once, so every array comes back
    writable, as an in-band pickle would make it. Data that is not a frame is read as a plain pickle.
    """
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    if view[:8] != FRAME_MAGIC:
        return cloudpickle.loads(view)
    _, n, stream_size = _FRAME_HEAD.unpack_from(view)
    at = _FRAME_HEAD.size
    buffers = []
    for i in range(n):
        start, size = _SPAN.unpack_from(view, at + i * _SPAN.size)
        piece = view[start:start + size]
        buffers.append(bytearray(piece) if view.readonly else piece)
    at += n * _SPAN.size
    return cloudpickle.loads(view[at:at + stream_size], buffers=buffers)


class Pickled:
    """One value pickled alone, its buffers kept out of band; ``load()`` gives the value back.

    A task pickles each result this way (so an unpicklable result fails only its call);
    inside a frame its buffers become the frame's own out-of-band buffers.
    """

    __slots__ = ("stream", "buffers")

    def __init__(self, stream: bytes, buffers: Sequence = ()):
        self.stream = stream
        self.buffers = list(buffers)

    @classmethod
    def of(cls, value: Any) -> "Pickled":
        buffers: list[pickle.PickleBuffer] = []
        stream = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        return cls(stream, buffers)

    def load(self) -> Any:
        return cloudpickle.loads(self.stream, buffers=self.buffers)

    @property
    def nbytes(self) -> int:
        return len(self.stream) + sum(memoryview(b).nbytes for b in self.buffers)

    def __reduce_ex__(self, protocol):
        if protocol < 5:
            raise pickle.PicklingError("spmd.codec.Pickled needs pickle protocol 5")
        return (_rebuild_pickled, (self.stream, *(pickle.PickleBuffer(b) for b in self.buffers)))

    def __repr__(self) -> str:
        return f"<Pickled {len(self.stream)} bytes + {len(self.buffers)} buffers>"


def _rebuild_pickled(stream: bytes, *buffers) -> Pickled:
    return Pickled(stream, buffers)
