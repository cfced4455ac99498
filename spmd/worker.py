"""The task entry point: ``python -m spmd.worker``, run once per task in a container.

    SPMD_STORE_URL, SPMD_JOB_ID ──> open store ──> manifest.json
    AWS_BATCH_JOB_ARRAY_INDEX (+ SPMD_TASK_OFFSET) ──> task index ──> 2 range reads of its shard
    function.pkl + calls ──> run each call, catching its exception
    ──> output/<task>.pkl (values or exception records + provenance), written atomically
    exit 0 when every call succeeded, 1 otherwise (so the queue retries the task)

On a retry, calls that succeeded in an earlier attempt are not run again.
Nothing here prints the environment.
"""
from __future__ import annotations

import logging
import os
import resource
import socket
import sys
import time

from . import codec, layout, shards
from .errors import ObjectNotFound
from .layout import Manifest


def open_store(url: str):
    """The ObjectStore for a URL, through the plugin registry."""
    from .plugins import store_class
    return store_class(url.split("://", 1)[0]).from_url(url)


def task_index(environ=os.environ) -> int:
    return int(environ["AWS_BATCH_JOB_ARRAY_INDEX"]) + int(environ.get("SPMD_TASK_OFFSET", "0"))


def attempt_number(environ=os.environ) -> int:
    return int(environ.get("AWS_BATCH_JOB_ATTEMPT") or environ.get("SPMD_ATTEMPT") or 1)


_jobs: dict = {}


def load_job(store, job_id: str):
    """The job's manifest and function, read once per process (a warm server loads them
    before it forks, so its tasks do not read them again)."""
    if job_id not in _jobs:
        manifest = Manifest.from_json(store.get(layout.manifest_key(job_id)))
        _jobs[job_id] = (manifest, codec.loads(store.get(layout.function_key(job_id))))
    return _jobs[job_id]


def run_task(store, job_id: str, task: int, attempt: int) -> bool:
    """Run one task's calls and write its output; True when every call succeeded."""
    started = time.time()
    manifest, func = load_job(store, job_id)
    shard, index = manifest.shard_of(task)
    calls = codec.loads(shards.read(store, layout.shard_key(job_id, shard), index))

    previous: list = [None] * len(calls)
    if attempt > 1:
        try:
            previous = codec.loads(store.get(layout.output_key(job_id, task)))["results"]
        except ObjectNotFound:
            pass

    results = []
    for (args, kwargs), before in zip(calls, previous):
        if before is not None and before[0] == "ok":
            results.append(before)
            continue
        try:
            # Each value is pickled alone: an unpicklable result fails only its own call.
            results.append(("ok", codec.dumps(func(*args, **kwargs))))
        except Exception as exc:
            logging.getLogger("spmd").exception("call failed in task %d", task)
            results.append(("error", codec.capture_exception(exc)))

    ok = all(status == "ok" for status, _ in results)
    output = {
        "task": task,
        "attempt": attempt,
        "final": ok or attempt >= manifest.max_attempts,
        "results": results,
        "provenance": {
            "started": started,
            "ended": time.time(),
            "attempt": attempt,
            "peak_memory": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "host": socket.gethostname(),
            "image": os.environ.get("SPMD_IMAGE", ""),
            "python": sys.version.split()[0],
        },
    }
    store.put(layout.output_key(job_id, task), codec.dumps(output))
    return ok


def main() -> int:
    if sys.argv[1:2] == ["--serve"]:  # a warm container's server (spmd.serve)
        from .serve import main as serve
        return serve(sys.argv[2:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s spmd.worker %(message)s")
    store = open_store(os.environ["SPMD_STORE_URL"])
    job_id = os.environ["SPMD_JOB_ID"]
    task, attempt = task_index(), attempt_number()
    logging.getLogger("spmd").info("job %s task %d attempt %d", job_id, task, attempt)
    return 0 if run_task(store, job_id, task, attempt) else 1


if __name__ == "__main__":
    sys.exit(main())
