"""Staging: how a map carries data references in and output files out, around the worker.

    client (Knot.map)                          task (spmd.task.worker calls Staged)
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
from typing import Any, Callable, Sequence

from .. import codec, data, protocol
from ..destinations import Destinations
from ..errors import SerializationError


class Staged:
    """The user's function as a task runs it: references staged to local paths, outputs stored
    (or published to the item's destination, when ``publish`` says the task does that)."""

    def __init__(self, func: Callable, destinations: Destinations | None = None,
                 publish: bool = True):
        self.func = func
        self.destinations = destinations
        self.publish = publish

    def __setstate__(self, state: dict) -> None:  # a function pickled by an earlier spmd
        self.__dict__.update({"destinations": None, "publish": True, **state})

    def __repr__(self) -> str:
        return f"Staged({self.func!r})"

    def __call__(self, _spmd_index: int, /, *args: Any, **kwargs: Any) -> Any:
        from ..task.worker import current_task
        task = current_task()
        if task is None:  # called by a runner other than spmd.task.worker: the task's environment
            store, job_id = data.store_at(os.environ[protocol.STORE_URL]), os.environ[protocol.JOB_ID]
        else:
            store, job_id = task
        dest = self.destinations
        item = data.ItemContext(store, job_id, _spmd_index,
                                dest.of(_spmd_index) if dest else None,
                                dest.options if dest else None, self.publish)
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


def prepare(func: Callable, calls: list[tuple[tuple, dict]], *,
            in_place: Callable = lambda path: False, destinations: Destinations | None = None,
            publish: bool = True) -> tuple[bytes, list[tuple[tuple, dict]], data.UploadReport]:
    """The pickled ``Staged(func)``, the calls with their index first and every File replaced
    by its DataRef (or UrlRef: a URL, or a path ``in_place`` says tasks read where it is), and
    the report of what to send (``data.send``, once the image is there)."""
    try:
        function = codec.dumps(Staged(func, destinations, publish))
    except Exception:
        codec.dumps_function(func)  # raises the error that names the culprit
        raise
    check = getattr(func, "check_call", None)
    report = data.UploadReport()
    data.resolve_remote([f for args, kwargs in calls for f in data.find((args, kwargs), data.File)],
                        report, in_place)

    def ref(value):
        return data.reference(value, report, in_place)
    staged = []
    for index, (args, kwargs) in enumerate(calls):
        if check is not None:
            check(index, args, kwargs)
        staged.append(((index, *data.replace(args, ref)), data.replace(kwargs, ref)))
    return function, staged, report


def dumps_calls(staged: list[tuple[tuple, dict]], calls: list[tuple[tuple, dict]],
                items: Sequence[int]) -> bytes:
    """The pickled staged calls of one task (its ``items``); an error names the item as the
    user wrote it."""
    try:
        return codec.dumps_calls(staged, items)
    except SerializationError:
        codec.dumps_calls(calls, items)
        raise
