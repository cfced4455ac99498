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
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Mapping

from spmd import layout, logcap
from spmd.backend import Capacity
from spmd.batch_queue import FAILED, SUCCEEDED, TERMINAL, ArraySpec, BatchQueue, TaskStatus
from spmd.errors import ObjectNotFound
from spmd.secrets import SECRETS_DIR, write as write_secrets

from . import engine
from .core import queue_key
from ..stores.directory import DirectoryStore

log = logging.getLogger("spmd")

#: seconds a scheduler started in place of a dead one has to take the job's lock, during which
#: no client thread of this process starts another
RESTART_GRACE = 15.0
#: schedulers started for one job (the first included; each within RESTART_WINDOW of the one
#: before) before its unfinished tasks fail, with the reason and the scheduler's log
RESTARTS = 4
RESTART_WINDOW = 600.0
_restarts: dict[tuple[str, str], list[float]] = {}
_restarts_lock = threading.Lock()


class SchedulerQueue(BatchQueue):
    """Runs each array with a detached ``python -m <scheduler_module> ROOT JOB`` process."""

    scheduler_module: str = ""
    kind: str = ""  # the backend's name, for messages
    #: a dead scheduler is replaced by one that resumes (True), or its tasks fail (False)
    resume_dead_scheduler = True
    grows_memory = True  # the core runs an attempt killed for memory again at the next size
    caps_parallel = True  # the core starts at most max_parallel attempts at once
    takes_secrets = True  # in <store>/spmd/secrets/<job>/, removed when the job's scheduler ends

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
        os.chmod(self.store.path(queue_key(spec.job_id, "spec.json")), 0o600)  # env: never shared
        with _restarts_lock:  # the first start counts: a scheduler has RESTART_GRACE to lock the job
            _restarts[(str(self.store.root), spec.job_id)] = [time.monotonic()]
        self._start_scheduler(spec.job_id)
        return spec.job_id

    def _start_scheduler(self, job_id: str) -> None:
        """Hand the job to an idle engine of this user's (spmd.scheduling.engine), or start a
        scheduler process for it."""
        pid = engine.hand_over(self.scheduler_module, str(self.store.root), job_id)
        if pid is not None:
            log.debug("job %s handed to the engine, pid %d", job_id, pid)
            return
        log_path = self.store.path(queue_key(job_id, "scheduler.log"))
        with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log_file:
            # -P and cwd="/": a module planted in the caller's folder is never imported
            safe = ["-P"] if sys.version_info >= (3, 11) else ["-I"]
            process = subprocess.Popen(
                [sys.executable, *safe, "-m", self.scheduler_module, str(self.store.root), job_id],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd="/")
        # Reap the scheduler when it ends so it never lingers as a zombie of this process.
        threading.Thread(target=process.wait, daemon=True, name="spmd-reaper").start()

    def scheduler_alive(self, job_id: str) -> bool:
        """Whether a scheduler holds the job's lock (it does for as long as it lives). Opens the
        lock read-only, so it works on a store that has become read-only."""
        try:
            fd = os.open(self.store.path(queue_key(job_id, "scheduler.lock")), os.O_RDONLY)
        except FileNotFoundError:
            return False
        except PermissionError:  # a reader of a shared store: only the owner can tell, or restart
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _replace_scheduler(self, handle: str) -> str | None:
        """Start a scheduler in place of a dead one; None when one is started (or starting),
        else why none can be: it keeps dying, or the store refuses to be written."""
        key = (str(self.store.root), handle)
        now = time.monotonic()
        log_path = self.store.path(queue_key(handle, "scheduler.log"))
        with _restarts_lock:
            started = [t for t in _restarts.get(key, []) if now - t < RESTART_WINDOW]
            if started and now - started[-1] < RESTART_GRACE:
                return None  # the one started a moment ago is still coming up
            if len(started) >= RESTARTS:
                return (f"the job's scheduler died {len(started) + 1} times; see its log "
                        f"{log_path}: {_tail(log_path)}")
            try:
                self._start_scheduler(handle)
            except OSError as exc:
                return (f"the job's scheduler is gone and a new one cannot start ({exc}); is "
                        f"the store at {self.store.root} read-only or full?")
            _restarts[key] = [*started, now]
        log.warning("the scheduler of job %s is gone; starting a new one", handle)
        return None

    def _state(self, handle: str) -> dict:
        try:
            return self.store.get_json(queue_key(handle, "state.json"))
        except ObjectNotFound:
            return {}

    def states(self, handle: str) -> Mapping[int, TaskStatus]:
        state = self._state(handle)
        tasks = {int(k): TaskStatus(**v) for k, v in state.get("tasks", {}).items()}
        if state.get("done") or self.scheduler_alive(handle):
            return tasks
        state = self._state(handle)  # it may have finished just now
        tasks = {int(k): TaskStatus(**v) for k, v in state.get("tasks", {}).items()}
        if state.get("done"):
            return tasks
        if not state and not self._has_spec(handle):
            return self._forgotten(handle)
        if not state:  # none has written its state yet: starting now, or died at its start
            tasks = {i: TaskStatus() for i in range(self._n_tasks(handle))}
            if self._starting(handle):
                return tasks
        if self.resume_dead_scheduler:
            # Another scheduler resumes from state.json and the runner's adopt(). Two clients
            # racing here start two, and the one that does not get the lock exits at once.
            reason = self._replace_scheduler(handle)
            if reason is None:
                return tasks
        else:
            reason = (f"the job's scheduler process (pid {state.get('pid')}) is gone; see its "
                      f"log {self.store.path(queue_key(handle, 'scheduler.log'))}")
        return {i: s if s.state in TERMINAL else TaskStatus(FAILED, s.attempts, None, reason, "error")
                for i, s in tasks.items()}

    def _starting(self, handle: str) -> bool:
        """Whether a scheduler was started for the job less than RESTART_GRACE ago (by this
        process, or by the one that submitted it: its spec's age)."""
        now = time.monotonic()
        with _restarts_lock:
            started = _restarts.get((str(self.store.root), handle), [])
        if started and now - started[-1] < RESTART_GRACE:
            return True
        try:
            written = self.store.path(queue_key(handle, "spec.json")).stat().st_mtime
        except OSError:
            return False
        return time.time() - written < RESTART_GRACE

    def _has_spec(self, handle: str) -> bool:
        return self.store.exists(queue_key(handle, "spec.json"))

    def _forgotten(self, handle: str) -> dict[int, TaskStatus]:
        """The job's queue folder has neither spec nor state (removed, or a store restored
        without it): no scheduler can resume it. Each task is judged by its output (the client
        takes one when there is one), else lost, saying why."""
        try:
            n_tasks = layout.Manifest.from_json(self.store.get(layout.manifest_key(handle))).n_tasks
        except ObjectNotFound:
            return {}
        reason = (f"the scheduler no longer knows this job: its queue "
                  f"{self.store.path(queue_key(handle, ''))} has no spec.json or state.json")
        listed = {layout.task_of_output_key(key)
                  for key in self.store.list(layout.output_prefix(handle))}
        return {i: TaskStatus(SUCCEEDED, 1, 0, "") if i in listed
                else TaskStatus(FAILED, 0, None, reason, "infrastructure") for i in range(n_tasks)}

    def _n_tasks(self, handle: str) -> int:
        try:
            return int(self.store.get_json(queue_key(handle, "spec.json"))["spec"]["n_tasks"])
        except ObjectNotFound:
            return 0

    def cancel(self, handle: str) -> None:
        # The scheduler looks for this every tick; it kills running tasks and drops pending ones.
        self.store.put(queue_key(handle, "cancel"), b"cancelled\n")

    def deliver_secrets(self, job_id: str, secrets: tuple) -> dict[str, str]:
        return {SECRETS_DIR: str(write_secrets(self.store, job_id, secrets))}

    def cancel_pending(self, handle: str) -> None:
        # The scheduler looks for this every tick; it drops pending tasks and queues no retry.
        self.store.put(queue_key(handle, "cancel_pending"), b"the failure budget is spent\n")

    def logs(self, handle: str, task: int) -> str:
        try:
            return self.store.get(layout.log_key(handle, task)).decode(errors="replace")
        except ObjectNotFound:
            return ""

    def log_part(self, handle: str, task: int, start: int) -> tuple[bytes, int]:
        return logcap.read_part(self.store.path(layout.log_key(handle, task)), start)


def _tail(path, lines: int = 5) -> str:
    try:
        with open(path, errors="replace") as handle:
            return " | ".join(handle.read().strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
