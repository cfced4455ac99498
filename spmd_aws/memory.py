"""More memory after an out-of-memory kill, on AWS Batch: the task again, as a new job.

Batch retries a job with the resources it was submitted with, so a child killed for its
memory (reason ``OutOfMemoryError``) exits there (the job definition's retry strategy has
an EXIT rule for it while a larger size remains), and the client that *watches* the job
submits that task alone, as a plain job of the next size's job definition:

    states(handle), read-only (any reader: the watcher, ``spmd status``, reports)
        ──> children as usual ──> jobs/<id>/queue/memory/<task>-<step>.json, one small
            object per resubmission ({"id": Batch job id, "step": size index, "before":
            attempts}), listed once per poll and each read once
        ──> each grown task's status is its latest job's, its attempts counted on
        ──> a task FAILED with "oom" and a larger size left is PENDING ("...; again with
            <size>"), unless the job's failure budget stopped what had not started
    advance(handle, states), only from the client watching the job (spmd.Job's poll)
        ──> each such task's record claimed with a conditional put (only one client wins:
            no task is submitted twice) ──> SubmitJob at that size (SPMD_TASK_OFFSET = the
            task, SPMD_ATTEMPT_OFFSET = attempts so far) ──> the record completed with the
            job's id

A job nobody watches waits with the task pending until a client watches it again
(``spmd results``, ``spmd.attach``); ``spmd status`` never submits.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import replace
from typing import Callable

from spmd import layout
from spmd.batch_queue import FAILED, PENDING, ArraySpec, Resources, TaskStatus
from spmd.errors import ObjectNotFound
from spmd.stores.object_store import ObjectStore
from spmd.units import format_bytes

from .reasons import task_status

log = logging.getLogger("spmd")


def spec_key(job_id: str) -> str:
    return f"{layout.prefix(job_id)}queue/spec.json"


def records_prefix(job_id: str) -> str:
    return f"{layout.prefix(job_id)}queue/memory/"


def record_key(job_id: str, task: int, step: int) -> str:
    return f"{records_prefix(job_id)}{task}-{step}.json"


def save_spec(store: ObjectStore, spec: ArraySpec) -> None:
    """What a resubmission needs, kept with the job (any client may resubmit)."""
    store.put_json(spec_key(spec.job_id), dataclasses.asdict(spec))


def load_spec(store: ObjectStore, job_id: str) -> ArraySpec:
    raw = store.get_json(spec_key(job_id))
    return ArraySpec(**{**raw, "command": tuple(raw["command"]),
                        "resources": Resources.from_dict(raw["resources"])})


def at_step(spec: ArraySpec, step: int, task: int, before: int) -> ArraySpec:
    """One task of spec at memory size ``step``, its attempts numbered after ``before``."""
    res = spec.resources
    sizes = res.memory_sizes
    env = {**spec.env, "SPMD_TASK_OFFSET": str(task), "SPMD_ATTEMPT_OFFSET": str(before),
           "SPMD_INFRA_LOST": str(before)}  # Batch counts this job's attempts afresh
    return replace(spec, n_tasks=1, env=env,
                   resources=replace(res, memory=sizes[step], more_memory=sizes[step + 1:]))


def records(store: ObjectStore, job_id: str, seen: dict | None = None) -> dict[int, list[dict]]:
    """Task -> its resubmissions in order (one listing; each record read once when ``seen``
    keeps them: a record with its job id never changes)."""
    seen = {} if seen is None else seen
    out: dict[int, list[dict]] = {}
    for key in store.list(records_prefix(job_id)):
        if key not in seen:
            try:
                record = store.get_json(key)
            except ObjectNotFound:
                continue
            if not record.get("id"):
                continue  # claimed, its SubmitJob under way
            seen[key] = record
        task = int(key.rsplit("/", 1)[1].split("-", 1)[0])
        out.setdefault(task, []).append(seen[key])
    return {task: sorted(recs, key=lambda r: r["step"]) for task, recs in out.items()}


def grown_jobs(store: ObjectStore, job_id: str, task: int) -> list[str]:
    """The Batch jobs that ran the task again with more memory, in order."""
    return [r["id"] for r in records(store, job_id).get(task, ())]


def grow(describe: Callable[[list[str]], dict[str, dict]], seen: dict,
         store: Callable[[], ObjectStore], job_id: str, out: dict[int, TaskStatus],
         stopped: Callable[[], bool]) -> dict[int, tuple[int, int]]:
    """Update ``out`` with the grown tasks' statuses, read-only; a task killed for memory
    with a larger size left reads PENDING. Returns those tasks: task -> (next step, attempts
    so far), for ``resubmit``. ``describe``: Batch job records by id (the queue's cache);
    ``seen``: the records read so far; ``stopped()``: the failure budget stopped the job's
    pending work (such a task then stays FAILED)."""
    grown = records(store(), job_id, seen)
    latest = {task: recs[-1] for task, recs in grown.items()}
    jobs = describe([r["id"] for r in latest.values()])
    for task, rec in latest.items():
        job = jobs.get(rec["id"])
        status = task_status(job) if job else TaskStatus(PENDING)
        out[task] = replace(status, attempts=status.attempts + rec["before"])
    due: dict[int, tuple[int, int]] = {}
    sizes: tuple[int, ...] = ()
    for task, status in sorted(out.items()):
        step = latest[task]["step"] if task in latest else 0
        if status.state != FAILED or status.lost != "oom":
            continue
        if not sizes:
            sizes = load_spec(store(), job_id).resources.memory_sizes
        if step + 1 >= len(sizes) or stopped():
            continue
        due[task] = (step + 1, status.attempts)
        out[task] = TaskStatus(PENDING, status.attempts, status.exit_code,
                               f"{status.reason}; again with {format_bytes(sizes[step + 1])}",
                               "oom", status.started, status.ended)
    return due


def resubmit(submit_one: Callable[[ArraySpec, str], str], store: Callable[[], ObjectStore],
             job_id: str, due: dict[int, tuple[int, int]]) -> None:
    """Submit each task of ``due`` (from ``grow``) again at its next memory size, as a plain
    job (``submit_one(spec, name)`` returns its id), claiming its record first so that no
    two clients submit it."""
    if not due:
        return
    spec = load_spec(store(), job_id)
    sizes = spec.resources.memory_sizes
    for task, (step, before) in sorted(due.items()):
        key = record_key(job_id, task, step)
        record = {"id": "", "step": step, "before": before}
        if store().put_new(key, json.dumps(record).encode()):  # this client won the claim
            batch_id = submit_one(at_step(spec, step, task, before),
                                        f"{job_id[:100]}-t{task}-m{step}")
            store().put_json(key, {**record, "id": batch_id})
            log.info("job %s: task %d ran out of memory at %s; again with %s", job_id, task,
                     format_bytes(sizes[step - 1]), format_bytes(sizes[step]))
