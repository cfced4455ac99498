"""The inputs of chained maps and group steps, and how a task reads them: the markers a map
puts in its calls, and their resolution from the upstream job's results in the store.

    Upstream(job, i)          item i's result of job (step2.map(job1))
    Gather(job, items)        those items' results, as one list (spmd.gather)
    resolve()                 in the task, before the call: each marker becomes its value, or
                              UpstreamFailed naming the item and its error
    upstream_failure()        on the client, for an engine that did not run such an item
    upstream_files()          in the task: the upstream item's output files

The client's side (which job a map follows, which tasks wait for which) is spmd.client.chain.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import codec, layout, protocol
from .errors import ConfigError, UpstreamFailed


@dataclass(frozen=True)
class Upstream:
    """The result of item ``item`` of job ``job_id``, as a chained map's input."""

    job_id: str
    item: int


@dataclass(frozen=True)
class Gather:
    """The results of several items of job ``job_id`` (in order), as one input."""

    job_id: str
    items: tuple[int, ...]
    skip_failed: bool = False


def references(call: tuple) -> list[tuple[str, int]]:
    """The upstream (job id, item) pairs one call reads, from its top-level arguments."""
    args, kwargs = call
    out = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, Upstream):
            out.append((value.job_id, value.item))
        elif isinstance(value, Gather):
            out.extend((value.job_id, item) for item in value.items)
    return out


def resolve(store, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """args and kwargs with each Upstream replaced by its value (UpstreamFailed if it failed);
    the call's upstream items are kept for upstream_files()."""
    _current[:] = [(store, a) for a in (*args, *kwargs.values()) if isinstance(a, Upstream)]
    if not any(isinstance(a, (Upstream, Gather)) for a in (*args, *kwargs.values())):
        return args, kwargs

    def value(a):
        if isinstance(a, Upstream):
            return _value(store, a)
        if isinstance(a, Gather):
            return _gathered(store, a)
        return a
    return tuple(value(a) for a in args), {k: value(v) for k, v in kwargs.items()}


def upstream_failure(store, job_id: str, item: int) -> UpstreamFailed | None:
    """On the client: the UpstreamFailed of item ``item`` of job ``job_id`` if that item failed
    or ended without a result, else None (it succeeded, or has not ended)."""
    try:
        _value(store, Upstream(job_id, item))
    except UpstreamFailed as error:
        return error
    except Exception:  # a result this client cannot load is not the upstream's failure
        return None
    return None


def _gathered(store, ref: Gather) -> list:
    values = []
    for item in ref.items:
        try:
            values.append(_value(store, Upstream(ref.job_id, item)))
        except UpstreamFailed:
            if not ref.skip_failed:
                raise
    return values


def _manifest(store, job_id: str) -> layout.Manifest:
    return layout.Manifest.from_json(store.get(layout.manifest_key(job_id)))


def _value(store, ref: Upstream) -> Any:
    manifest = _manifest(store, ref.job_id)
    task = manifest.task_of(ref.item)
    if task is None:
        from .reuse import load_reused
        return load_reused(store, ref.job_id)[ref.item].value.load()
    output = protocol.read_output(store, ref.job_id, task)
    if output is None:
        raise UpstreamFailed(ref.job_id, ref.item, "it ended without a result (lost or "
                             "cancelled): see its job's report")
    kind, payload = output.results[manifest.items_of(task).index(ref.item)]
    if kind != protocol.OK:
        error = codec.rebuild_exception(payload)
        raise UpstreamFailed(ref.job_id, ref.item, f"{type(error).__name__}: {error}")
    return payload.load()


_current: list[tuple[Any, Upstream]] = []  # the store and upstream items of the running call


def upstream_files() -> Path:
    """In a chained map's task: a folder with the output files (``spmd.outputs()``) of the
    upstream item this call's input came from, fetched on first use."""
    from . import data
    if not _current:
        raise ConfigError("spmd.upstream_files() is for the function of a chained map "
                          "(step2.map(job1)), inside its task")
    store, ref = _current[-1]
    folder = Path(tempfile.mkdtemp(prefix=f"spmd-upstream-{ref.item}-",
                                   dir=os.environ.get(protocol.STAGE_DIR) or None))
    data.download(store, ref.job_id, ref.item, folder)
    return folder

