"""ProcessQueue: the client's side of the process scheduler.

``submit`` writes the array's spec into the store and starts one detached scheduler process
for the job (its own session, so it outlives the client). Everything asked afterwards is
read from the store, where the scheduler keeps its state, so any process can attach.

    jobs/<id>/queue/spec.json       the ArraySpec and the capacity to schedule within
    jobs/<id>/queue/state.json      every task's status, rewritten atomically by the scheduler
    jobs/<id>/queue/cancel          present once cancel was asked
    jobs/<id>/queue/scheduler.log   the scheduler process's own log
    jobs/<id>/logs/<task>.log       each task's output, every attempt (spmd's layout)
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from typing import Callable, Mapping

from spmd import layout
from spmd.backend import Capacity
from spmd.batch_queue import FAILED, TERMINAL, ArraySpec, BatchQueue, TaskStatus
from spmd.errors import ObjectNotFound
from spmd_local.store import LocalStore


def queue_key(job_id: str, name: str) -> str:
    return f"{layout.prefix(job_id)}queue/{name}"


class ProcessQueue(BatchQueue):
    """Runs each array with a detached scheduler process on this machine."""

    def __init__(self, store: LocalStore, capacity: Callable[[], Capacity]):
        self.store = store
        self._capacity = capacity

    def submit(self, spec: ArraySpec) -> str:
        capacity = self._capacity()
        capacity.slots(spec.resources, "process")  # ResourceError if a task can never start
        self.store.put_json(queue_key(spec.job_id, "spec.json"), {
            "spec": dataclasses.asdict(spec),
            "capacity": dataclasses.asdict(capacity),
            "python": sys.executable,
        })
        log_path = self.store.path(queue_key(spec.job_id, "scheduler.log"))
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "spmd_process.scheduler", str(self.store.root), spec.job_id],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        # Reap the scheduler when it ends, so it never lingers as a zombie of this client.
        threading.Thread(target=process.wait, daemon=True, name="spmd-process-reaper").start()
        return spec.job_id

    def _state(self, handle: str) -> dict:
        try:
            return self.store.get_json(queue_key(handle, "state.json"))
        except ObjectNotFound:
            return {}

    def states(self, handle: str) -> Mapping[int, TaskStatus]:
        state = self._state(handle)
        tasks = {int(k): TaskStatus(**v) for k, v in state.get("tasks", {}).items()}
        pid = state.get("pid")
        if pid and not state.get("done") and not alive(pid):
            state = self._state(handle)  # it may have finished just now
            if not state.get("done"):
                reason = (f"the job's scheduler process (pid {pid}) is gone; see its log "
                          f"{self.store.path(queue_key(handle, 'scheduler.log'))}")
                tasks = {i: s if s.state in TERMINAL else
                         TaskStatus(FAILED, s.attempts, None, reason, "error")
                         for i, s in tasks.items()}
        return tasks

    def cancel(self, handle: str) -> None:
        # The scheduler looks for this every tick; it kills running tasks and drops pending ones.
        self.store.put(queue_key(handle, "cancel"), b"cancelled\n")

    def logs(self, handle: str, task: int) -> str:
        try:
            return self.store.get(layout.log_key(handle, task)).decode(errors="replace")
        except ObjectNotFound:
            return ""


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
