"""A map's queue handle on AWS: the Batch jobs that run its tasks, and how tasks map to them.

    {"v": 1, "jobs": [[Batch job id, first task, size], ...], "attempts": n,
     "grows": spmd job (memory=[sizes]), "job": spmd job, "after": upstream (a chained map),
     "secrets": the ARNs of the job's secrets}

Plain functions over JSON, shared by the queue and the modules it uses (chain, memory).
"""
from __future__ import annotations

import json
import math

from .aws import AwsError

MAX_ARRAY = 10_000  # AWS Batch's largest array


def split(n_tasks: int) -> list[tuple[int, int]]:
    """(first task, size) of each submission: as few as hold n_tasks, sizes balanced."""
    parts = max(1, math.ceil(n_tasks / MAX_ARRAY))
    base, extra = divmod(n_tasks, parts)
    out, offset = [], 0
    for i in range(parts):
        size = base + (i < extra)
        out.append((offset, size))
        offset += size
    return out


def parts(n_tasks: int, cap: int | None = None) -> list[tuple[int, int]]:
    """(first task, size) of each submission: split(n_tasks), or with a cap (max_parallel)
    waves of at most cap tasks, each following the one before (spmd_aws.chain's waves)."""
    if not cap:
        return split(n_tasks)
    size = min(cap, MAX_ARRAY)
    return [(offset, min(size, n_tasks - offset)) for offset in range(0, n_tasks, size)]


def encode_handle(jobs: list[tuple[str, int, int]], attempts: int = 1, grows: str = "",
                  job: str = "", after: dict | None = None, secrets: dict | None = None) -> str:
    """The handle of submitted jobs ``(job id, first task, size)`` allowing ``attempts`` each;
    ``grows``: the spmd job id whose tasks get more memory after an out-of-memory kill;
    ``job``: the spmd job id (where its outputs are, should Batch forget its jobs)."""
    data = {"v": 1, "jobs": [list(job) for job in jobs], "attempts": attempts}
    if grows:
        data["grows"] = grows
    if job:
        data["job"] = job
    if after:
        data["after"] = after  # the upstream job of a chained map (spmd_aws.chain)
    if secrets:  # the ARNs (never values) of the job's secrets, deleted when it has ended
        data["secrets"] = secrets
    return json.dumps(data, separators=(",", ":"))


def grows(handle: str) -> str:
    """The spmd job id when its tasks grow their memory (spmd_aws.memory), else ''."""
    return json.loads(handle).get("grows", "")


def decode_handle(handle: str) -> list[tuple[str, int, int]]:
    data = json.loads(handle)
    if data.get("v") != 1:
        raise AwsError(f"this spmd cannot read queue handle version {data.get('v')!r}")
    return [(str(job_id), int(offset), int(size)) for job_id, offset, size in data["jobs"]]


def max_attempts(handle: str) -> int | None:
    """How many attempts each task may have (None: not recorded)."""
    return json.loads(handle).get("attempts")




def waits_for(before: str, before_size: int, size: int) -> dict:
    """The dependsOn entry of a wave on the wave before it: child i after child i (N_TO_N)
    when both are arrays of one size, else after the whole wave."""
    if before_size == size > 1:
        return {"jobId": before, "type": "N_TO_N"}
    return {"jobId": before}


def child_id(job_id: str, offset: int, size: int, task: int) -> str:
    """The Batch job id that runs task (a child ``<parent>:<index>``, or the plain job itself)."""
    return f"{job_id}:{task - offset}" if size > 1 else job_id
