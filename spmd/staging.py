"""Staging: how a map carries data references in and output files out, around the worker.

    client (Knot.map)                          task (spmd.worker calls Staged)
    call (args, kwargs) ── File ─> DataRef     Staged(index, *args, **kwargs)
      (hashed; sent after the image is ready)    DataRef ─> local path (spmd.data.stage)
    ──> ((index, *args), kwargs)                 func(*args, **kwargs), spmd.outputs() set
                                                 outputs/ ─> jobs/<job>/files/<index>/

The worker is unchanged: it calls the pickled function with each call's arguments. Here
the function is ``Staged(func)`` and each call starts with its item's index, so the task
knows where its outputs go, even on a retry that skips calls done before.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from . import codec, data
from .errors import SerializationError


class Staged:
    """The user's function as a task runs it: references staged to local paths, outputs stored."""

    def __init__(self, func: Callable):
        self.func = func

    def __repr__(self) -> str:
        return f"Staged({self.func!r})"

    def __call__(self, _spmd_index: int, /, *args: Any, **kwargs: Any) -> Any:
        from .worker import current_task
        task = current_task()
        if task is None:  # called by a runner other than spmd.worker: the task's environment
            store, job_id = data.store_at(os.environ["SPMD_STORE_URL"]), os.environ["SPMD_JOB_ID"]
        else:
            store, job_id = task
        item = data.ItemContext(store, job_id, _spmd_index)
        data.set_current(item)
        try:
            def local(ref):
                return data.stage(store, ref)
            value = self.func(*data.replace(args, local), **data.replace(kwargs, local))
            item.collect()
            return value
        finally:
            data.set_current(None)
            item.close()


def prepare(func: Callable, calls: list[tuple[tuple, dict]]
            ) -> tuple[bytes, list[tuple[tuple, dict]], data.UploadReport]:
    """The pickled ``Staged(func)``, the calls with their index first and every File replaced
    by its DataRef, and the report of what to send (``data.send``, once the image is there)."""
    try:
        function = codec.dumps(Staged(func))
    except Exception:
        codec.dumps_function(func)  # raises the error that names the culprit
        raise
    check = getattr(func, "check_call", None)
    report = data.UploadReport()

    def ref(value):
        return data.reference(value, report)
    staged = []
    for index, (args, kwargs) in enumerate(calls):
        if check is not None:
            check(index, args, kwargs)
        staged.append(((index, *data.replace(args, ref)), data.replace(kwargs, ref)))
    return function, staged, report


def dumps_calls(staged: list[tuple[tuple, dict]], calls: list[tuple[tuple, dict]],
                first_item: int) -> bytes:
    """The pickled staged calls of one task; an error names the item as the user wrote it."""
    try:
        return codec.dumps_calls(staged, first_item)
    except SerializationError:
        codec.dumps_calls(calls, first_item)
        raise
