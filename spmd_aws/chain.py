"""Chained maps and group steps on AWS Batch: Batch waits, not the client.

    submit   per array of the downstream job (split at 10,000 as the upstream's was):
             aligned (after_tasks[t] == [t] for each of its tasks, and an upstream array
             with the same first task and size)
                 ──> dependsOn [{jobId: that upstream parent, type: N_TO_N}]: child i starts
                     once child i upstream has ended ("Job dependencies", AWS Batch user guide)
             otherwise (a gather, reused items, unaligned)
                 ──> dependsOn [{jobId: each upstream Batch job holding a task it waits for}]
                     (whole arrays: they end when all their children have; at most 20)
             no SubmitJob or other call is added: the dependency rides on each SubmitJob
    states   a child Batch failed without running because a dependency FAILED (a lost
             upstream task; "Dependent Job failed") ──> its task's output, written once by
             the client: each item UpstreamFailed naming the upstream item and its error,
             read from the upstream task's output when there is one, else its lost reason
             (one DescribeJobs/ListJobs round of the upstream handle, and one GetObject per
             upstream task named)
"""
from __future__ import annotations

import json
import time
from typing import Sequence

from spmd.batch_queue import ArraySpec, BatchQueue, TaskStatus
from spmd.errors import ConfigError, UpstreamFailed
from spmd.stores.object_store import ObjectStore

from .handle import decode_handle
from .reasons import DEPENDENCY_FAILED

#: AWS Batch's most dependencies of one job ("Job dependencies": up to 20)
MAX_DEPENDENCIES = 20


def check(spec: ArraySpec, upstream: Sequence[tuple[str, int, int]], grows: bool) -> None:
    """ConfigError, before any call, for a chain Batch cannot carry."""
    if grows:
        raise ConfigError(f"job {spec.after_job} runs with memory=[sizes]: on AWS a task run again "
                          f"with more memory is a new Batch job, which a chained map's "
                          f"dependency cannot follow; give the upstream job one memory size")
    if len(upstream) > MAX_DEPENDENCIES:
        raise ConfigError(f"job {spec.after_job} is {len(upstream)} Batch arrays; AWS Batch lets "
                          f"a job depend on at most {MAX_DEPENDENCIES}: chain to a smaller job")


def depends_on(spec: ArraySpec, offset: int, size: int,
               upstream: Sequence[tuple[str, int, int]]) -> list[dict]:
    """The dependsOn of the submission holding tasks offset..offset+size."""
    waits = [tuple(w) for w in spec.after_tasks[offset:offset + size]]
    needed = {u for w in waits for u in w}
    if not needed:
        return []  # every item reused upstream: nothing to wait for
    if size > 1 and len(waits) == size and all(w == (offset + k,) for k, w in enumerate(waits)):
        same = [job for job, first, n in upstream if (first, n) == (offset, size)]
        if same:
            return [{"jobId": same[0], "type": "N_TO_N"}]
    return [{"jobId": job} for job, first, n in upstream
            if any(first <= u < first + n for u in needed)]


def dependency_failed(record: dict | None) -> bool:
    return bool(record) and (record.get("statusReason") or "").startswith(DEPENDENCY_FAILED)


def upstream_tasks(record: dict, upstream: Sequence[tuple[str, int, int]]) -> list[int]:
    """The upstream tasks a failed child waited for, from its DescribeJobs dependsOn."""
    index = (record.get("arrayProperties") or {}).get("index")
    out: list[int] = []
    for dep in record.get("dependsOn") or ():
        for job, first, n in upstream:
            if job != dep.get("jobId"):
                continue
            if dep.get("type") == "N_TO_N" and index is not None:
                out.append(first + int(index))
            else:
                out.extend(range(first, first + n))
    return out


def write_failed(queue: BatchQueue, store: ObjectStore, after: dict, job_id: str, task: int,
                 record: dict) -> bool:
    """Write task's output: each item UpstreamFailed (see the module's docstring). False when
    the failed dependency is not the upstream job's (a wave of max_parallel's own)."""
    from spmd import codec, layout, protocol
    upstream = decode_handle(after["handle"])
    candidates = upstream_tasks(record, upstream)
    if not candidates:
        return False
    up_id = after["job"]
    mine = layout.Manifest.from_json(store.get(layout.manifest_key(job_id)))
    theirs = layout.Manifest.from_json(store.get(layout.manifest_key(up_id)))
    causes: dict[int, str] = {}  # upstream item -> its error
    first: tuple[int, str] | None = None
    states = None
    for u in candidates:
        output = protocol.read_output(store, up_id, u)
        if output is not None and output.ok:
            continue
        items = theirs.items_of(u)
        if output is not None:
            for item, (kind, payload) in zip(items, output.results):
                if kind != protocol.OK:
                    causes[item] = f"{payload['type'].rsplit('.', 1)[-1]}: {payload['message']}"
        if states is None:
            states = queue.states(after["handle"])
        lost = states.get(u, TaskStatus())
        for item in items:
            causes.setdefault(item, f"its task {u} ended without a result: "
                                    f"{lost.reason or 'lost'}")
        if first is None:
            failed = next(i for i in items if i in causes)
            first = (failed, causes[failed])
        if len(candidates) > 1:
            break  # a whole array was waited for: name its first failed task
    if first is None:
        first = (theirs.items_of(candidates[0])[0], "it failed (AWS Batch: Dependent Job failed)")
    now = time.time()
    results = []
    for item in mine.items_of(task):
        up_item, cause = (item, causes[item]) if len(candidates) == 1 and item in causes \
            else first
        results.append((protocol.ERROR, codec.capture_exception(
            UpstreamFailed(up_id, up_item, cause))))
    protocol.write_output(store, job_id, protocol.TaskOutput(
        task=task, attempt=1, final=True, results=results,
        provenance=protocol.Provenance(started=now, ended=now, attempt=1, peak_memory=0,
                                       host="", image="", python="")))
    return True


def after_of(handle: str) -> dict | None:
    """The handle's upstream ({"job": id, "handle": its handle}), or None."""
    return json.loads(handle).get("after")
