"""LocalQueue: the client's side of the local scheduler, spmd's shared SchedulerQueue.

The files it keeps in the store are the core's (``spmd.scheduling.client``). A scheduler
that died is replaced by one that adopts the job's warm containers. Cancel also kills the
job's containers from the client, so running tasks stop at once.
"""
from __future__ import annotations

from spmd import data, integrity, layout
from spmd.batch_queue import ArraySpec
from spmd.scheduling import SchedulerQueue, queue_key

from .runner import LABEL_JOB

__all__ = ["LocalQueue", "LABEL_JOB", "queue_key"]


class LocalQueue(SchedulerQueue):
    """Runs each array with a detached ``python -m spmd_local.scheduler`` process."""

    scheduler_module = "spmd_local.scheduler"
    kind = "local"

    def __init__(self, store, capacity, log_limit: int | None = None):
        super().__init__(store, capacity)
        self.log_limit = log_limit

    def submit(self, spec: ArraySpec) -> str:
        integrity.make_key(self.store, spec.job_id)  # the scheduler signs outputs with it
        for key in (layout.reused_key(spec.job_id), data.uploads_key(spec.job_id),
                    layout.data_key(spec.job_id)):
            integrity.sign(self.store, spec.job_id, key)  # those it has: written before submit
        return super().submit(spec)

    def extra_config(self, spec: ArraySpec) -> dict:
        return {"log_limit": self.log_limit}

    def cancel(self, handle: str) -> None:
        super().cancel(handle)
        from docker.errors import APIError

        from spmd import docker_engine
        for container in docker_engine.client().containers.list(
                filters={"label": f"{LABEL_JOB}={handle}"}, sparse=True):
            try:
                container.kill()
            except APIError:
                pass  # already gone
