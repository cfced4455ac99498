"""LocalQueue: the client's side of the local scheduler.

``submit`` writes the array's spec into the store and starts one detached scheduler
process for the job (its own session, so it outlives the client). Everything the
client asks afterwards it reads from the store, where the scheduler keeps its state,
or from the Docker engine, so any process can attach to the job.

    jobs/<id>/queue/spec.json       the ArraySpec, with the capacity to schedule within
    jobs/<id>/queue/state.json      the scheduler's view of every task, rewritten atomically
    jobs/<id>/queue/cancel          present once cancel was asked
    jobs/<id>/queue/scheduler.lock  flock'ed by the live scheduler; free means it died
    jobs/<id>/queue/scheduler.log   the scheduler process's own log
"""
from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import subprocess
import sys
import threading
from typing import Callable, Mapping

from spmd import layout
from spmd.backend import Capacity
from spmd.batch_queue import ArraySpec, BatchQueue, TaskStatus
from spmd.errors import ObjectNotFound

from .store import LocalStore

LABEL_JOB = "spmd.job"
log = logging.getLogger("spmd")


def queue_key(job_id: str, name: str) -> str:
    return f"{layout.prefix(job_id)}queue/{name}"


class LocalQueue(BatchQueue):
    """Runs each array with a detached scheduler process on this machine."""

    def __init__(self, store: LocalStore, capacity: Callable[[], Capacity]):
        self.store = store
        self._capacity = capacity

    def submit(self, spec: ArraySpec) -> str:
        capacity = self._capacity()
        capacity.slots(spec.resources, "local")  # ResourceError if a task can never start
        self.store.put_json(queue_key(spec.job_id, "spec.json"), {
            "spec": dataclasses.asdict(spec),
            "capacity": dataclasses.asdict(capacity),
            "store_root": str(self.store.root),
            "uid": os.getuid(),
            "gid": os.getgid(),
        })
        self._start_scheduler(spec.job_id)
        return spec.job_id

    def _start_scheduler(self, job_id: str) -> None:
        log_path = self.store.path(queue_key(job_id, "scheduler.log"))
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "spmd_local.scheduler", str(self.store.root), job_id],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        # Reap the scheduler when it ends so it never lingers as a zombie of this process.
        threading.Thread(target=process.wait, daemon=True, name="spmd-reaper").start()

    def scheduler_alive(self, job_id: str) -> bool:
        """Whether a scheduler holds the job's lock (it does for as long as it lives)."""
        path = self.store.path(queue_key(job_id, "scheduler.lock"))
        try:
            with open(path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lock, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        return False

    def _state(self, handle: str) -> dict:
        try:
            return self.store.get_json(queue_key(handle, "state.json"))
        except ObjectNotFound:
            return {}

    def states(self, handle: str) -> Mapping[int, TaskStatus]:
        state = self._state(handle)
        if state and not state.get("done") and not self.scheduler_alive(handle):
            # The scheduler died (killed, machine rebooted): start another, which resumes
            # from state.json and the containers' labels. Two clients racing here start two,
            # and the one that does not get the lock exits at once.
            log.warning("the scheduler of job %s is gone; starting a new one", handle)
            self._start_scheduler(handle)
        return {int(k): TaskStatus(**v) for k, v in state.get("tasks", {}).items()}

    def cancel(self, handle: str) -> None:
        self.store.put(queue_key(handle, "cancel"), b"cancelled\n")
        from spmd import docker_engine
        from docker.errors import APIError
        for container in docker_engine.client().containers.list(
                filters={"label": f"{LABEL_JOB}={handle}"}, sparse=True):
            try:
                container.kill()
            except APIError:
                pass  # already gone

    def logs(self, handle: str, task: int) -> str:
        try:
            return self.store.get(layout.log_key(handle, task)).decode(errors="replace")
        except ObjectNotFound:
            return ""
