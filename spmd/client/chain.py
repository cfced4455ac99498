"""Chained maps: ``step2.map(job1)`` runs item i of step 2 once item i of job 1 has ended,
with its result as the input, and no byte relayed by the client.

    client   map(job1) ──> each item is Upstream(job1, i); the tasks are job 1's tasks,
             aligned (task t of step 2 holds the items of job 1's task t), and the spec
             says which upstream tasks each task waits for (ArraySpec.after_tasks)
    engine   starts task t once job 1's tasks in after_tasks[t] have ended (the scheduler
             core here; Batch N_TO_N and Slurm aftercorr where they are aligned)
    task     spmd.upstream.resolve() reads job 1's output of item i from the store: its
             value, or UpstreamFailed naming the item and its error
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from .. import layout
from ..errors import ConfigError
from ..upstream import Gather, references

if TYPE_CHECKING:
    from .job import Job


def gather(job: "Job", items: Sequence[int] | None = None, *, skip_failed: bool = False) -> Gather:
    """One input holding every result of ``job`` (or of ``items``), in item order, for a group
    step: ``group.map([spmd.gather(job2)])``. The task waits for those items without the client,
    and reads them from the store (nothing is uploaded again). A failed item raises
    UpstreamFailed in the task, unless ``skip_failed``: then it is left out."""
    from .job import Job
    if not isinstance(job, Job):
        raise ConfigError(f"spmd.gather() takes a Job (what map returns), not {type(job).__name__}")
    chosen = tuple(range(len(job))) if items is None else tuple(items)
    bad = [i for i in chosen if not isinstance(i, int) or not 0 <= i < len(job)]
    if bad:
        raise ConfigError(f"spmd.gather(job {job.id}, items=...): job {job.id} has items "
                          f"0..{len(job) - 1}, not {bad[:5]}")
    return Gather(job.id, chosen, skip_failed)


def upstream_job(items: Any) -> "Job | None":
    """The job a map is chained to: a Job, or the whole list of one job's futures; None for
    plain items. Refuses a part of a job's futures or futures of several jobs, saying why."""
    from .future import Future
    from .job import Job
    if isinstance(items, Job):
        return items
    if not isinstance(items, (list, tuple)) or not items \
            or not all(isinstance(f, Future) for f in items):
        return None
    ids = {f.job_id for f in items}
    if len(ids) > 1:
        raise ConfigError(f"map over futures of {len(ids)} jobs ({', '.join(sorted(ids))}): a "
                          f"chained map follows one job; map over each job on its own")
    from .job import _jobs
    job = _jobs.get(items[0].job_id)
    if job is None or list(items) != list(job.futures):
        raise ConfigError(f"map over part of job {items[0].job_id}'s futures: a chained map "
                          f"follows the whole job, item by item; pass the job itself, or map "
                          f"over the results you want once they are there")
    return job


def task_order(upstream: layout.Manifest) -> list[int]:
    """The upstream items in its task order, then the items it reused (they run at once)."""
    return [*upstream.submitted, *upstream.reused]


def referenced_job(calls: Sequence[tuple]) -> "Job | None":
    """The one job a map's items gather from (None: none); refuses several, or one this
    process does not hold."""
    from .job import _jobs
    ids = {job_id for call in calls for job_id, _ in references(call)}
    if not ids:
        return None
    if len(ids) > 1:
        raise ConfigError(f"a map reads results of {len(ids)} jobs ({', '.join(sorted(ids))}): "
                          f"gather from one job per map")
    job_id = ids.pop()
    job = _jobs.get(job_id)
    if job is None:
        raise ConfigError(f"job {job_id} is not held by this process: pass spmd.gather() the "
                          f"Job that map or spmd.attach returned")
    return job


def after_tasks(upstream: layout.Manifest, calls: Sequence[tuple], run: Sequence[int],
                size: int) -> list[list[int]]:
    """For each downstream task (chunks of ``size`` of ``run``), the upstream tasks its items
    read (an item reused upstream needs none)."""
    out = []
    for start in range(0, len(run), size):
        tasks = {upstream.task_of(item) for i in run[start:start + size]
                 for _, item in references(calls[i])}
        out.append(sorted(t for t in tasks if t is not None))
    return out


def check_same_store(job: "Job", store) -> None:
    """A chained map reads its inputs from the upstream job's store: it must be this one."""
    if job.backend.store.url != store.url:
        raise ConfigError(f"job {job.id} is in store {job.backend.store.url}, this map's is "
                          f"{store.url}: chain maps of one backend and profile")
