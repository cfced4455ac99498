"""SchedulerQueue: the client's side of the scheduler core, shared by the backends that use it.

``submit`` writes the array's spec into the store and starts one detached scheduler process
for the job (its own session, so it outlives the client). Everything asked afterwards is
read from the store, where the scheduler keeps its state, so any process can attach.

    jobs/<id>/queue/spec.json       the ArraySpec, with the capacity to schedule within
    jobs/<id>/queue/state.json      every task's status, rewritten atomically by the scheduler
    jobs/<id>/queue/cancel          present once cancel was asked
    jobs/<id>/queue/scheduler.lock  flock'ed by the live scheduler; free means it died
    jobs/<id>/queue/scheduler.log   the scheduler process's own log
    jobs/<id>/logs/<task>.log       each task's output, every attempt (spmd's layout)
"""
from __future__ import annotations

import dataclasses
import fcntl
import logging
import subprocess
import sys
import threading
from typing import Callable, Mapping

from spmd import layout
from spmd.backend import Capacity
from spmd.batch_queue import FAILED, TERMINAL, ArraySpec, BatchQueue, TaskStatus
from spmd.errors import ObjectNotFound

from .core import queue_key
from .store import DirectoryStore

log = logging.getLogger("spmd")


class SchedulerQueue(BatchQueue):
    """Runs each array with a detached ``python -m <scheduler_module> ROOT JOB`` process."""

    scheduler_module: str = ""
    kind: str = ""  # the backend's name, for messages
    #: a dead scheduler is replaced by one that resumes (True), or its tasks fail (False)
    resume_dead_scheduler = True
    grows_memory = True  # the core runs an attempt killed for memory again at the next size

    def __init__(self, store: DirectoryStore, capacity: Callable[[], Capacity]):
        self.store = store
        self._capacity = capacity

    def extra_config(self, spec: ArraySpec) -> dict:
        """What else the backend's runner needs in spec.json."""
        return {}

    def submit(self, spec: ArraySpec) -> str:
        capacity = self._capacity()
        capacity.slots(spec.resources, self.kind)  # ResourceError if a task can never start
        self.store.put_json(queue_key(spec.job_id, "spec.json"), {
            "spec": dataclasses.asdict(spec),
            "capacity": dataclasses.asdict(capacity),
            **self.extra_config(spec),
        })
        self._start_scheduler(spec.job_id)
        return spec.job_id

    def _start_scheduler(self, job_id: str) -> None:
        log_path = self.store.path(queue_key(job_id, "scheduler.log"))
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", self.scheduler_module, str(self.store.root), job_id],
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
        tasks = {int(k): TaskStatus(**v) for k, v in state.get("tasks", {}).items()}
        if not state or state.get("done") or self.scheduler_alive(handle):
            return tasks
        state = self._state(handle)  # it may have finished just now
        if state.get("done"):
            return {int(k): TaskStatus(**v) for k, v in state.get("tasks", {}).items()}
        if self.resume_dead_scheduler:
            # Another scheduler resumes from state.json and the runner's adopt(). Two clients
            # racing here start two, and the one that does not get the lock exits at once.
            log.warning("the scheduler of job %s is gone; starting a new one", handle)
            self._start_scheduler(handle)
            return tasks
        reason = (f"the job's scheduler process (pid {state.get('pid')}) is gone; see its log "
                  f"{self.store.path(queue_key(handle, 'scheduler.log'))}")
        return {i: s if s.state in TERMINAL else TaskStatus(FAILED, s.attempts, None, reason, "error")
                for i, s in tasks.items()}

    def cancel(self, handle: str) -> None:
        # The scheduler looks for this every tick; it kills running tasks and drops pending ones.
        self.store.put(queue_key(handle, "cancel"), b"cancelled\n")

    def logs(self, handle: str, task: int) -> str:
        try:
            return self.store.get(layout.log_key(handle, task)).decode(errors="replace")
        except ObjectNotFound:
            return ""
