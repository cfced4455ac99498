"""The local scheduler: one detached process per job, ``python -m spmd_local.scheduler ROOT JOB``.

    spec.json ──> pending tasks ──> start containers while the capacity allows
        (capacity is shared by every job: running spmd containers are counted from
         their labels under a file lock)
    each tick: containers that exited ──> save log ──> SUCCEEDED / retry / FAILED
               containers past the timeout ──> killed ──> FAILED (timed out, not retried)
               cancel marker ──> kill running, never start pending ──> CANCELLED
    every change ──> state.json (atomic)

Its state is in the store and in container labels, never only in this process, and it
does not depend on the client: killing the client loses nothing.
"""
from __future__ import annotations

import collections
import fcntl
import logging
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field

from spmd import docker_engine
from spmd.batch_queue import CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, TaskStatus
from spmd.units import format_bytes

from .queue import LABEL_JOB, queue_key
from .store import LocalStore

log = logging.getLogger("spmd.scheduler")

TICK = 0.1
LABEL_MANAGED = "spmd.managed"


@dataclass
class Running:
    container_id: str
    attempt: int
    started: float
    timed_out: bool = False


@dataclass
class Scheduler:
    store: LocalStore
    job_id: str
    config: dict
    tasks: dict = field(default_factory=dict)
    running: dict = field(default_factory=dict)
    pending: collections.deque = field(default_factory=collections.deque)

    @property
    def spec(self) -> dict:
        return self.config["spec"]

    @property
    def resources(self) -> dict:
        return self.spec["resources"]

    def run(self) -> None:
        n = self.spec["n_tasks"]
        self.tasks = {i: TaskStatus() for i in range(n)}
        self.pending.extend((i, 1) for i in range(n))
        self.engine = docker_engine.client()
        self.write_state()
        last_written = self.snapshot()
        cancelled = False
        while self.pending or self.running:
            if not cancelled and self.store.exists(queue_key(self.job_id, "cancel")):
                cancelled = True
                self.cancel_all()
            self.observe(cancelled)
            if not cancelled:
                self.start_what_fits()
            if self.snapshot() != last_written:
                self.write_state()
                last_written = self.snapshot()
            time.sleep(TICK)
        self.write_state(done=True)

    def snapshot(self):
        return {i: (s.state, s.attempts) for i, s in self.tasks.items()}

    def write_state(self, done: bool = False) -> None:
        self.store.put_json(queue_key(self.job_id, "state.json"), {
            "pid": os.getpid(),
            "done": done,
            "tasks": {str(i): asdict(s) for i, s in self.tasks.items()},
        })

    # -- starting -------------------------------------------------------------

    def start_what_fits(self) -> None:
        if not self.pending:
            return
        lock_path = self.store.root / ".scheduler.lock"
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used_cpu, used_mem = self.used()
            cap = self.config["capacity"]
            need_cpu, need_mem = self.resources["vcpus"], self.resources["memory"]
            while self.pending and used_cpu + need_cpu <= cap["vcpus"] + 1e-9 \
                    and used_mem + need_mem <= cap["memory"]:
                task, attempt = self.pending.popleft()
                self.start(task, attempt)
                used_cpu += need_cpu
                used_mem += need_mem

    def used(self) -> tuple[float, int]:
        """CPU and memory held by every running spmd container on this engine (all jobs)."""
        cpu, mem = 0.0, 0
        for container in self.engine.containers.list(filters={"label": LABEL_MANAGED}, sparse=True):
            labels = container.attrs.get("Labels") or {}
            cpu += float(labels.get("spmd.vcpus", 0))
            mem += int(labels.get("spmd.memory", 0))
        return cpu, mem

    def start(self, task: int, attempt: int) -> None:
        spec, res = self.spec, self.resources
        env = dict(spec["env"])
        env.update({
            "AWS_BATCH_JOB_ARRAY_INDEX": str(task),
            "SPMD_ATTEMPT": str(attempt),
            "SPMD_IMAGE": spec["image"],
        })
        root = self.config["store_root"]
        name = f"spmd-{self.job_id}-{task}-a{attempt}"
        try:
            container = self.engine.containers.run(
                spec["image"], list(spec["command"]), name=name, detach=True,
                environment=env,
                labels={LABEL_MANAGED: "1", LABEL_JOB: self.job_id, "spmd.task": str(task),
                        "spmd.attempt": str(attempt), "spmd.vcpus": str(res["vcpus"]),
                        "spmd.memory": str(res["memory"])},
                volumes={root: {"bind": root, "mode": "rw"}},
                nano_cpus=int(res["vcpus"] * 1e9),
                mem_limit=res["memory"], memswap_limit=res["memory"],
                user=f"{self.config['uid']}:{self.config['gid']}")
        except Exception as exc:  # the task fails; the scheduler goes on with the others
            log.exception("cannot start task %d", task)
            self.append_log(task, attempt, f"spmd: the container could not start: {exc}\n")
            self.tasks[task] = TaskStatus(FAILED, attempt, None,
                                          f"the container could not start: {exc}", "error")
            return
        log.info("task %d attempt %d started as %s", task, attempt, container.name)
        self.running[task] = Running(container.id, attempt, time.monotonic())
        self.tasks[task] = TaskStatus(RUNNING, attempt)

    # -- watching -------------------------------------------------------------

    def observe(self, cancelled: bool) -> None:
        if not self.running:
            return
        live = {c.id: c.status for c in self.engine.containers.list(
            all=True, filters={"label": f"{LABEL_JOB}={self.job_id}"}, sparse=True)}
        timeout = self.resources["timeout"]
        for task, run in list(self.running.items()):
            status = live.get(run.container_id, "removed")
            if status in ("exited", "dead", "removed"):
                self.finish(task, run, cancelled)
            elif timeout and not run.timed_out and time.monotonic() - run.started > timeout:
                log.info("task %d timed out after %gs", task, timeout)
                run.timed_out = True
                self.kill(run.container_id)

    def finish(self, task: int, run: Running, cancelled: bool) -> None:
        del self.running[task]
        from docker.errors import NotFound
        try:
            container = self.engine.containers.get(run.container_id)
            state = container.attrs["State"]
            exit_code, oom = state.get("ExitCode"), state.get("OOMKilled", False)
            text = container.logs(stdout=True, stderr=True).decode(errors="replace")
            if run.timed_out or cancelled:
                text += f"spmd: the task was {'timed out' if run.timed_out else 'cancelled'} and killed\n"
            self.append_log(task, run.attempt, text)
            container.remove(force=True)
        except NotFound:
            exit_code, oom = None, False
        res = self.resources
        if run.timed_out:
            status = TaskStatus(FAILED, run.attempt, exit_code,
                                f"timed out after {res['timeout']:g}s", "timeout")
        elif cancelled:
            status = TaskStatus(CANCELLED, run.attempt, exit_code, "cancelled", "cancelled")
        elif exit_code == 0:
            status = TaskStatus(SUCCEEDED, run.attempt, 0)
        elif oom:
            status = TaskStatus(FAILED, run.attempt, exit_code,
                                f"out of memory (limit {format_bytes(res['memory'])})", "oom")
        else:
            status = TaskStatus(FAILED, run.attempt, exit_code, f"exited with code {exit_code}",
                                "error")
        retry = status.state == FAILED and status.lost != "timeout" \
            and run.attempt < res["retries"] + 1
        if retry:
            log.info("task %d failed (%s); retrying, attempt %d", task, status.reason, run.attempt + 1)
            self.pending.append((task, run.attempt + 1))
            status = TaskStatus(PENDING, run.attempt, exit_code, status.reason, status.lost)
        self.tasks[task] = status

    def cancel_all(self) -> None:
        log.info("cancel asked: stopping %d running tasks, dropping %d pending",
                 len(self.running), len(self.pending))
        for run in self.running.values():
            self.kill(run.container_id)
        while self.pending:
            task, attempt = self.pending.popleft()
            self.tasks[task] = TaskStatus(CANCELLED, attempt - 1, None, "cancelled before it started",
                                          "cancelled")

    def kill(self, container_id: str) -> None:
        from docker.errors import APIError
        try:
            self.engine.containers.get(container_id).kill()
        except APIError:
            pass

    def append_log(self, task: int, attempt: int, text: str) -> None:
        """Keep the task's log in the store, every attempt, so it outlives the container."""
        from spmd import layout
        key = layout.log_key(self.job_id, task)
        try:
            before = self.store.get(key).decode(errors="replace")
        except KeyError:
            before = ""
        header = f"--- spmd: attempt {attempt} ---\n" if attempt > 1 or before else ""
        self.store.put(key, (before + header + text).encode())


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    root, job_id = argv
    store = LocalStore(root)
    scheduler = Scheduler(store, job_id, store.get_json(queue_key(job_id, "spec.json")))
    try:
        scheduler.run()
    except BaseException as exc:
        log.error("scheduler failed: %s", traceback.format_exc())
        reason = f"the local scheduler failed: {type(exc).__name__}: {exc}"
        for task, status in scheduler.tasks.items():
            if status.state in (PENDING, RUNNING):
                scheduler.tasks[task] = TaskStatus(FAILED, status.attempts, None, reason, "error")
        for run in scheduler.running.values():
            scheduler.kill(run.container_id)
        scheduler.write_state(done=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
