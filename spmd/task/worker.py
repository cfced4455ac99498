"""The task entry point: ``python -m spmd.task.worker``, run once per task in a container.

    SPMD_STORE_URL, SPMD_JOB_ID ──> open store ──> load_job: manifest.json + function.pkl
                                                   (once per process, cached)
    AWS_BATCH_JOB_ARRAY_INDEX (+ SPMD_TASK_OFFSET) ──> task index ──> 2 range reads of its shard
    calls (a frame: arrays are views of the read, not copies) ──> run each, catching its error
    ──> output/<task>.pkl: a TaskOutput frame (values' buffers written as they are), atomically
    exit 0 when every call succeeded, 1 otherwise (so the queue retries the task)
    told to stop (SIGTERM, SIGUSR1) ──> checkpoint_dir() saved, the calls done kept in a
    non-final output ──> exit 75 (protocol.REQUEUE_EXIT): run again under infra_retries

A server that runs many tasks in one process (a warm container) calls ``load_job`` once and
``run_task`` per task. On a retry, calls that succeeded in an earlier attempt are not run
again. The names of the variables are in ``spmd.protocol``. Nothing here prints the environment.
"""
from __future__ import annotations

import logging
import os
import resource
import socket
import sys
import threading
import time
from typing import Any, Callable

from .. import attempts, codec, layout, protocol, secrets, shards, upstream
from . import checkpoint
from ..errors import InputsLost, ObjectNotFound, TaskLost
from ..layout import Manifest
from ..stores.object_store import ObjectStore
from ..plugins import open_store
from ..protocol import ERROR, OK, Provenance, TaskOutput, attempt_number, task_index

__all__ = ["attempt_number", "current_task", "load_job", "main", "open_store", "run_task", "task_index"]

_JOBS_KEPT = 8
_jobs: dict[tuple[str, str], tuple[Manifest, Callable]] = {}
_jobs_lock = threading.Lock()


def load_job(store: ObjectStore, job_id: str) -> tuple[Manifest, Callable[..., Any]]:
    """The job's manifest and function, read and unpickled once per process."""
    key = (store.url, job_id)
    with _jobs_lock:  # held while loading: threads starting tasks at once read it once
        if key not in _jobs:
            manifest = Manifest.from_json(store.get(layout.manifest_key(job_id)))
            func = codec.loads_frame(store.get_view(layout.function_key(job_id)))
            while len(_jobs) >= _JOBS_KEPT:
                _jobs.pop(next(iter(_jobs)))
            _jobs[key] = (manifest, func)
        return _jobs[key]


_current = threading.local()


def current_task() -> tuple[ObjectStore, str] | None:
    """The store and job id of the task this thread is running (for code around the user's
    function, such as spmd's staging of data references); None outside a task."""
    return getattr(_current, "task", None)


def run_task(store: ObjectStore, job_id: str, task: int, attempt: int,
             infra_lost: int | None = None) -> bool:
    """Run one task's calls and write its output; True when every call succeeded.

    ``infra_lost`` (default: from the task's environment) is how many earlier attempts were
    lost to infrastructure; the output is final on the last attempt ``retries`` allows.
    Told to stop, it saves the task's checkpoint and raises SystemExit(REQUEUE_EXIT)."""
    _current.task = (store, job_id)
    if infra_lost is None:
        infra_lost = protocol.infra_lost()
    undo = checkpoint.begin(store, job_id, task)
    try:
        return _run_task(store, job_id, task, attempt, infra_lost)
    except checkpoint.StopRequested as stop:  # told to stop before or after its calls
        print(checkpoint.on_stop(stop.why), file=sys.stderr, flush=True)
        raise SystemExit(protocol.REQUEUE_EXIT) from None
    finally:
        undo()
        _current.task = None


def _run_task(store: ObjectStore, job_id: str, task: int, attempt: int, infra_lost: int) -> bool:
    started = time.time()
    secrets.apply()  # the Knot's secrets, as environment variables (spmd.secrets)
    manifest, func = load_job(store, job_id)
    shard, index = manifest.shard_of(task)
    try:
        calls = codec.loads_frame(shards.read(store, layout.shard_key(job_id, shard), index))
    except ObjectNotFound as exc:
        raise InputsLost(
            f"the inputs of job {job_id} are gone ({exc}): they were kept in memory "
            "(/dev/shm) while the job ran, and the machine has restarted since, or they were "
            "removed; map again (reuse=True skips the items that finished)") from None

    previous: list = [None] * len(calls)
    if attempt > 1:
        before = protocol.read_output(store, job_id, task)
        if before is not None:
            previous = before.results

    results: list[protocol.CallResult] = []
    try:
        for (args, kwargs), before in zip(calls, previous):
            if before is not None and before[0] == OK:
                results.append(before)
                continue
            try:
                args, kwargs = upstream.resolve(store, args, kwargs)  # a chained map's inputs
                # Each value is pickled alone: an unpicklable result fails only its own call.
                results.append((OK, codec.Pickled.of(func(*args, **kwargs))))
            except Exception as exc:
                logging.getLogger("spmd").exception("call failed in task %d", task)
                results.append((ERROR, codec.capture_exception(exc)))
    except checkpoint.StopRequested as stop:
        _requeue(store, job_id, task, attempt, started, results, len(calls), stop.why)
    del calls  # the inputs' memory may go before the output is written

    ok = all(kind == OK for kind, _ in results)
    final = attempts.output_is_final(manifest.resources, attempt, infra_lost, ok)
    protocol.write_output(store, job_id, _output(task, attempt, final, results, started))
    if ok:
        checkpoint.on_success()
    return ok


def _output(task: int, attempt: int, final: bool, results: list, started: float) -> TaskOutput:
    return TaskOutput(
        task=task, attempt=attempt, final=final, results=results,
        provenance=Provenance(
            started=started, ended=time.time(), attempt=attempt,
            peak_memory=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            host=socket.gethostname(), image=os.environ.get(protocol.IMAGE, ""),
            python=sys.version.split()[0]))


def _requeue(store: ObjectStore, job_id: str, task: int, attempt: int, started: float,
             results: list, n_calls: int, why: str) -> None:
    """Told to stop: save the checkpoint, keep the calls done (a non-final output whose other
    calls say they were interrupted), say so in the log, and exit REQUEUE_EXIT."""
    line = checkpoint.on_stop(why)
    if any(kind == OK for kind, _ in results):
        stopped = codec.capture_exception(TaskLost(
            f"requeued ({why}) before this call ended", job_id=job_id, task=task))
        padded = results + [(ERROR, stopped)] * (n_calls - len(results))
        protocol.write_output(store, job_id, _output(task, attempt, False, padded, started))
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(protocol.REQUEUE_EXIT)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s spmd.task.worker %(message)s")
    store = open_store(os.environ[protocol.STORE_URL])
    job_id = os.environ[protocol.JOB_ID]
    task, attempt = task_index(), attempt_number()
    logging.getLogger("spmd").info("job %s task %d attempt %d", job_id, task, attempt)
    return 0 if run_task(store, job_id, task, attempt) else 1


if __name__ == "__main__":
    sys.exit(main())
