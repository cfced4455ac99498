"""Payload codec: cloudpickle for functions, inputs and results; remote exceptions carried back.

The user's own modules that the task image does not hold (a file beside the script, a
package under development) are pickled by value, so they travel with the function.
A remote exception comes back as itself, with ``__cause__`` set to a RemoteTraceback
holding the task's traceback text (as concurrent.futures.process does).
"""
from __future__ import annotations

import os
import sys
import sysconfig
import traceback
import types
from typing import Any, Callable

import cloudpickle

from .errors import RemoteError, SerializationError

_IMAGE_PACKAGES = {"spmd", "spmd_local", "spmd_aws"}


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


def dumps_calls(calls: list[tuple[tuple, dict]], first_item: int) -> bytes:
    """The pickled calls of one task; SerializationError naming the item that cannot be pickled."""
    try:
        return cloudpickle.dumps(calls)
    except Exception:
        for offset, call in enumerate(calls):
            try:
                cloudpickle.dumps(call)
            except Exception as exc:
                index = first_item + offset
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
    return cloudpickle.dumps(value)


def loads(data: bytes) -> Any:
    return cloudpickle.loads(data)
