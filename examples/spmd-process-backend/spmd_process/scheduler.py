"""The process scheduler: one detached process per job, ``python -m spmd_process.scheduler ROOT JOB``.

    spec.json ──> pending (task, attempt) ──> start children while the capacity allows
        (the capacity is shared by every job on the same store: each scheduler publishes
         what its running tasks hold in ROOT/.process-usage/, read under a file lock)
    each tick: exited children ──> save log ──> SUCCEEDED / retry (PENDING) / FAILED
               children past the timeout ──> killed ──> FAILED, timed out (not retried)
               children over the memory limit ──> killed ──> FAILED, out of memory (retried)
               cancel marker ──> kill running, never start pending ──> CANCELLED
    every change ──> state.json (atomic), with this pid and ``done``

A child is ``python -m spmd_process.launch --memory BYTES -- COMMAND`` in its own session
(so killing its process group kills whatever it started), in a scratch directory that is
removed when it ends, with the environment the local Docker scheduler gives a container:
AWS_BATCH_JOB_ARRAY_INDEX, SPMD_ATTEMPT, and the spec's env (SPMD_STORE_URL, SPMD_JOB_ID).
A task's state becomes final only after its log is saved.
"""
from __future__ import annotations

import collections
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from spmd import layout
from spmd.batch_queue import CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, TaskStatus
from spmd.errors import ObjectNotFound
from spmd.units import format_bytes
from spmd_local.store import LocalStore

from .launch import OOM_EXIT
from .queue import alive, queue_key

log = logging.getLogger("spmd.process")

TICK = 0.05
PYTHONS = ("python", "python3", f"python3.{sys.version_info.minor}")
# Inherited from the client's environment these would mislead the worker about its task.
NOT_INHERITED = ("AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ATTEMPT", "SPMD_TASK_OFFSET",
                 "SPMD_ATTEMPT", "SPMD_SINGLE_TASK")


@dataclass
class Running:
    attempt: int
    process: subprocess.Popen
    folder: str  # scratch: work/ is the task's cwd, task.log its output
    started: float
    timed_out: bool = False
    over_memory: bool = False


class Scheduler:
    """Runs one job's tasks as processes within the capacity, retrying and timing them out."""

    def __init__(self, store: LocalStore, job_id: str, config: dict):
        self.store = store
        self.job_id = job_id
        self.spec = config["spec"]
        self.capacity = config["capacity"]
        self.python = config.get("python") or sys.executable
        self.res = self.spec["resources"]
        n = self.spec["n_tasks"]
        self.tasks = {i: TaskStatus() for i in range(n)}
        self.pending = collections.deque((i, 1) for i in range(n))
        self.running: dict[int, Running] = {}
        self.cancelled = False
        self.usage_dir = store.root / ".process-usage"
        self.usage_dir.mkdir(exist_ok=True)

    def run(self) -> None:
        self.write_state()
        written = self.snapshot()
        try:
            while self.pending or self.running:
                if not self.cancelled and self.store.exists(queue_key(self.job_id, "cancel")):
                    self.cancel_all()
                self.observe()
                if not self.cancelled:
                    self.start_what_fits()
                if self.snapshot() != written:
                    self.write_state()
                    written = self.snapshot()
                time.sleep(TICK)
        finally:
            (self.usage_dir / f"{self.job_id}.json").unlink(missing_ok=True)
        self.write_state(done=True)

    def snapshot(self):
        return {i: (s.state, s.attempts) for i, s in self.tasks.items()}

    def write_state(self, done: bool = False) -> None:
        self.store.put_json(queue_key(self.job_id, "state.json"), {
            "pid": os.getpid(),
            "done": done,
            "tasks": {str(i): asdict(s) for i, s in self.tasks.items()},
        })

    # -- capacity -------------------------------------------------------------

    def publish_usage(self) -> None:
        n = len(self.running)
        usage = {"pid": os.getpid(), "vcpus": self.res["vcpus"] * n, "memory": self.res["memory"] * n}
        path = self.usage_dir / f"{self.job_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(usage))
        os.replace(tmp, path)

    def used_by_others(self) -> tuple[float, int]:
        cpu, mem = 0.0, 0
        for path in self.usage_dir.glob("*.json"):
            if path.stem == self.job_id:
                continue
            try:
                usage = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if alive(usage.get("pid", 0)):
                cpu += usage["vcpus"]
                mem += usage["memory"]
        return cpu, mem

    # -- starting -------------------------------------------------------------

    def start_what_fits(self) -> None:
        if not self.pending:
            return
        with open(self.usage_dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used_cpu, used_mem = self.used_by_others()
            cpu, mem = self.res["vcpus"], self.res["memory"]
            used_cpu += cpu * len(self.running)
            used_mem += mem * len(self.running)
            started = False
            while self.pending and used_cpu + cpu <= self.capacity["vcpus"] + 1e-9 \
                    and used_mem + mem <= self.capacity["memory"]:
                task, attempt = self.pending.popleft()
                self.launch(task, attempt)
                used_cpu += cpu
                used_mem += mem
                started = True
            if started:
                self.publish_usage()

    def command(self) -> list[str]:
        """The spec's command, its Python being this environment's (there is no image)."""
        command = list(self.spec["command"])
        if command and command[0] in PYTHONS:
            command[0] = self.python
        return command

    def launch(self, task: int, attempt: int) -> None:
        folder = tempfile.mkdtemp(prefix=f"spmd-{self.job_id}-{task}-a{attempt}-")
        os.mkdir(os.path.join(folder, "work"))
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        env.update(self.spec["env"])
        env.update(AWS_BATCH_JOB_ARRAY_INDEX=str(task), SPMD_ATTEMPT=str(attempt),
                   SPMD_IMAGE=self.spec["image"])
        argv = [self.python, "-m", "spmd_process.launch", "--memory", str(self.res["memory"]),
                "--", *self.command()]
        # A retry keeps the reason the previous attempt failed, for the client's log.
        reason = self.tasks[task].reason if attempt > 1 else ""
        with open(os.path.join(folder, "task.log"), "wb") as output:
            try:
                process = subprocess.Popen(argv, cwd=os.path.join(folder, "work"), env=env,
                                           stdin=subprocess.DEVNULL, stdout=output,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           close_fds=True)
            except OSError as exc:
                log.error("cannot start task %d: %s", task, exc)
                self.append_log(task, attempt, f"spmd: the process could not start: {exc}\n")
                shutil.rmtree(folder, ignore_errors=True)
                self.settle(task, attempt, TaskStatus(FAILED, attempt, None,
                                                      f"the process could not start: {exc}", "error"))
                return
        self.running[task] = Running(attempt, process, folder, time.monotonic())
        self.tasks[task] = TaskStatus(RUNNING, attempt, None, reason)
        log.info("task %d attempt %d started as pid %d", task, attempt, process.pid)

    # -- watching -------------------------------------------------------------

    def observe(self) -> None:
        ended = False
        for task, run in list(self.running.items()):
            code = run.process.poll()
            if code is None:
                if self.res["timeout"] and not run.timed_out \
                        and time.monotonic() - run.started > self.res["timeout"]:
                    log.info("task %d timed out after %gs", task, self.res["timeout"])
                    run.timed_out = True
                    _kill(run.process.pid)
                elif not run.over_memory and _rss(run.process.pid) > self.res["memory"]:
                    log.info("task %d is over its memory limit", task)
                    run.over_memory = True
                    _kill(run.process.pid)
                continue
            del self.running[task]
            ended = True
            _kill(run.process.pid)  # whatever the task started and left behind
            status = self.outcome(run, code)
            text = Path(run.folder, "task.log").read_bytes().decode(errors="replace")
            if run.timed_out or self.cancelled:
                text += f"spmd: the task was {'timed out' if run.timed_out else 'cancelled'} and killed\n"
            elif status.lost == "oom":
                text += f"spmd: the task was stopped: {status.reason}\n"
            self.append_log(task, run.attempt, text)
            shutil.rmtree(run.folder, ignore_errors=True)
            self.settle(task, run.attempt, status)
        if ended:
            self.publish_usage()

    def outcome(self, run: Running, code: int) -> TaskStatus:
        res, attempt = self.res, run.attempt
        if run.timed_out:
            return TaskStatus(FAILED, attempt, code, f"timed out after {res['timeout']:g}s", "timeout")
        if self.cancelled:
            return TaskStatus(CANCELLED, attempt, code, "cancelled", "cancelled")
        if code == 0:
            return TaskStatus(SUCCEEDED, attempt, 0)
        if run.over_memory or code in (OOM_EXIT, -signal.SIGKILL):
            # SIGKILL that this scheduler did not send: the kernel's out-of-memory killer.
            return TaskStatus(FAILED, attempt, code,
                              f"out of memory (limit {format_bytes(res['memory'])})", "oom")
        if code < 0:
            return TaskStatus(FAILED, attempt, code, f"killed by signal {-code}", "error")
        return TaskStatus(FAILED, attempt, code, f"exited with code {code}", "error")

    def settle(self, task: int, attempt: int, status: TaskStatus) -> None:
        """Record how an attempt ended, queueing a retry where one is due."""
        if status.state == FAILED and status.lost != "timeout" and not self.cancelled \
                and attempt < self.res["retries"] + 1:
            log.info("task %d failed (%s); retrying, attempt %d", task, status.reason, attempt + 1)
            self.pending.append((task, attempt + 1))
            status = TaskStatus(PENDING, attempt, status.exit_code, status.reason, status.lost)
        self.tasks[task] = status

    def cancel_all(self) -> None:
        self.cancelled = True
        log.info("cancel asked: stopping %d running tasks, dropping %d pending",
                 len(self.running), len(self.pending))
        for run in self.running.values():
            _kill(run.process.pid)
        while self.pending:
            task, attempt = self.pending.popleft()
            self.tasks[task] = TaskStatus(CANCELLED, attempt - 1, None, "cancelled before it started",
                                          "cancelled")

    def append_log(self, task: int, attempt: int, text: str) -> None:
        """Keep the task's log in the store, every attempt, so it outlives the process."""
        key = layout.log_key(self.job_id, task)
        try:
            before = self.store.get(key).decode(errors="replace")
        except ObjectNotFound:
            before = ""
        header = f"--- spmd: attempt {attempt} ---\n" if attempt > 1 or before else ""
        self.store.put(key, (before + header + text).encode())


def _kill(pid: int) -> None:
    """SIGKILL the task's whole process group (the task is its session's leader)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _rss(pid: int) -> int:
    """Resident memory of a process in bytes (0 when unknown: no /proc, or it just ended)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0



def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    root, job_id = argv
    store = LocalStore(root)
    scheduler = Scheduler(store, job_id, store.get_json(queue_key(job_id, "spec.json")))

    def stop(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.run()
    except BaseException as exc:
        log.error("scheduler failed: %s", traceback.format_exc())
        reason = f"the process scheduler failed: {type(exc).__name__}: {exc}"
        for run in scheduler.running.values():
            _kill(run.process.pid)
        for task, status in scheduler.tasks.items():
            if status.state in (PENDING, RUNNING):
                scheduler.tasks[task] = TaskStatus(FAILED, status.attempts, None, reason, "error")
        scheduler.write_state(done=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
