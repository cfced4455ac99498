"""Reruns that skip finished work: results found by content, in the backend's own store.

    reuse key = sha256(function bytes, image tag, env)      one per (function, image, env)
    item key  = sha256(the item's pickled call, without its index)
    cache/<reuse key>/<job-id>.json   {"keys": [item key of each item, in input order]},
                                      written by map before it submits

    map(items, reuse=True) ──> list cache/<reuse key>/ (one request), newest job first:
        the same items in the same order, in a job still running ──> attach to that job
        else each wanted item key ──> that job's output (or reused.pkl) ──> a success is reused
    ──> only the items without a stored success are submitted; the reused results are
        copied into the new job's reused.pkl, so it stands alone when old jobs are cleaned

A result is found only while its job's data is in the store: ``spmd clean`` removes a
job with its cache entry, and the entry of a job that is gone is skipped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import types
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from . import codec, integrity, layout, protocol
from .batch_queue import PENDING, RUNNING, TaskStatus
from .errors import ObjectNotFound, ResultDamaged
from .layout import Manifest
from .stores.object_store import ObjectStore

if TYPE_CHECKING:
    from .backend import Backend

log = logging.getLogger("spmd")


def reuse_key(function: bytes, image_tag: str, env: Mapping[str, str], func: Any = None) -> str:
    """The content key of what computes a result: the pickled function (the user's own
    modules by value), its code object when it has one (a function pickled by reference is
    only its name), the image's content tag, and the Knot's env."""
    digest = hashlib.sha256(b"spmd-reuse-1\0")
    digest.update(function)
    code = getattr(func, "__code__", None)
    if isinstance(code, types.CodeType):
        _code_digest(digest, code)
    digest.update(b"\0" + image_tag.encode() + b"\0")
    digest.update(json.dumps(dict(env), sort_keys=True).encode())
    return digest.hexdigest()[:40]


def _code_digest(digest, code: types.CodeType) -> None:
    """What a code object does, stably (marshal's bytes vary with reference counts)."""
    digest.update(code.co_code + repr((code.co_names, code.co_varnames)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_digest(digest, const)
        else:
            digest.update(repr(const).encode())


def item_key(parts: list) -> str:
    """The content key of one item: its pickled call (a frame's parts)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:40]


@dataclass(frozen=True)
class Reused:
    """One item's result taken from an earlier job."""

    value: codec.Pickled
    job_id: str
    provenance: dict = field(default_factory=dict)


@dataclass
class Found:
    """What the store holds for a map: a running job to attach to, or results by item."""

    attach: str | None = None
    results: dict[int, Reused] = field(default_factory=dict)


def find(backend: "Backend", key: str, keys: list[str]) -> Found:
    """The stored successes of these item keys under reuse key, newest job first; or the
    job to attach to when one with exactly these items still runs."""
    store, found = backend.store, Found()
    wanted: dict[str, list[int]] = {}
    for item, k in enumerate(keys):
        wanted.setdefault(k, []).append(item)
    for entry in sorted(store.list(layout.cache_prefix(key)), reverse=True):
        if not wanted:
            break
        job_id = entry.rsplit("/", 1)[1][:-len(".json")]
        try:
            theirs = store.get_json(entry)["keys"]
            manifest = Manifest.from_json(store.get(layout.manifest_key(job_id)))
        except Exception:  # cleaned meanwhile, or not ours to read: not a source
            continue
        if theirs == keys and not found.results and _still_running(backend, job_id, manifest):
            found.attach = job_id
            return found
        for item, reused in _successes(store, manifest, theirs, set(wanted)).items():
            for mine in wanted.pop(theirs[item], []):
                found.results[mine] = reused
    return found


def _still_running(backend: "Backend", job_id: str, manifest: Manifest) -> bool:
    """Whether the queue says a task of the job is pending or running."""
    try:
        handle = backend.store.get_json(layout.queue_key(job_id))["handle"]
    except Exception:  # never submitted, or cleaned meanwhile
        return False
    states = backend.queue.states(handle) if handle else {}
    return any(states.get(t, TaskStatus()).state in (PENDING, RUNNING)
               for t in range(manifest.n_tasks))


def _successes(store: ObjectStore, manifest: Manifest, keys: list[str],
               wanted: set[str]) -> dict[int, Reused]:
    """Items of a job (by its index) whose key is wanted and whose result is a success."""
    items = [i for i, k in enumerate(keys) if k in wanted]
    out: dict[int, Reused] = {}
    if manifest.reused and any(i in set(manifest.reused) for i in items):
        try:
            out.update({i: r for i, r in load_reused(store, manifest.job_id).items() if i in items})
        except ResultDamaged as exc:  # nothing to take from there: those items run again
            log.warning("%s", exc)
    tasks: dict[int, list[int]] = {}
    for item in items:
        task = manifest.task_of(item)
        if task is not None:
            tasks.setdefault(task, []).append(item)
    for task, task_items in tasks.items():
        try:
            output = protocol.read_output(store, manifest.job_id, task)
        except ResultDamaged as exc:
            log.warning("%s", exc)
            continue
        if output is None:
            continue
        provenance = asdict(output.provenance)
        for position, item in enumerate(manifest.items_of(task)):
            if item in task_items and position < len(output.results):
                kind, value = output.results[position]
                if kind == protocol.OK:
                    out[item] = Reused(value, manifest.job_id, provenance)
    return out


def record(store: ObjectStore, key: str, job_id: str, keys: list[str]) -> None:
    """Make a job's items findable by later reruns (before it is submitted)."""
    store.put_json(layout.cache_key(key, job_id), {"keys": keys})


def save_reused(store: ObjectStore, job_id: str, results: Mapping[int, Reused]) -> None:
    store.put_parts(layout.reused_key(job_id), codec.dumps_frame(dict(results)))


def load_reused(store: ObjectStore, job_id: str) -> dict[int, Reused]:
    """The results a job took from earlier ones, by item."""
    key = layout.reused_key(job_id)
    try:
        view = store.get_view(key)
    except ObjectNotFound:
        return {}
    try:  # signed at submit where the backend signs (spmd.integrity): else never unpickled
        intact = integrity.verify(store, job_id, key, view)
    except integrity.Unsigned:
        intact = False
    if not intact:
        raise ResultDamaged(key, "it changed after the job was submitted", job_id=job_id)
    try:
        found = codec.loads_frame(view)
    except Exception as exc:  # truncated or overwritten
        raise ResultDamaged(key, f"{type(exc).__name__}: {exc}", job_id=job_id) from exc
    if not isinstance(found, dict):
        raise ResultDamaged(key, f"it holds a {type(found).__name__}", job_id=job_id)
    return found


def forget(store: ObjectStore, manifest: Manifest) -> None:
    """Remove a job's cache entry (``spmd clean``; its results go with the job's data)."""
    if manifest.reuse_key:
        store.delete(layout.cache_key(manifest.reuse_key, manifest.job_id))
