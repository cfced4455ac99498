"""The local scheduler: one detached process per job, ``python -m spmd_local.scheduler ROOT JOB``.

    spec.json ──> pending tasks ──> launch containers while the capacity allows
        (capacity is shared by every job: other jobs' running spmd containers are counted
         from their labels, under a file lock on the store)
    each tick: containers that exited ──> save log, remove ──> SUCCEEDED / retry / FAILED
               containers past the timeout ──> killed ──> FAILED (timed out, not retried)
               cancel marker ──> kill running, never start pending ──> CANCELLED
    every change ──> state.json (atomic)

Docker calls that take long (create+start, logs+remove) run on a small thread pool, so
a slow engine call for one task does not hold up the others. A task's state becomes
final only after its log is saved. The state lives in the store and in container
labels, never only in this process, and nothing depends on the client: killing the
client loses nothing.
"""
from __future__ import annotations

import collections
import concurrent.futures
import fcntl
import logging
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from spmd import docker_engine, layout
from spmd.batch_queue import CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, TaskStatus
from spmd.errors import ObjectNotFound
from spmd.units import format_bytes

from .queue import LABEL_JOB, queue_key
from .store import LocalStore

log = logging.getLogger("spmd.scheduler")

TICK = 0.1
LABEL_MANAGED = "spmd.managed"
DOCKER_THREADS = 6


@dataclass
class Running:
    attempt: int
    launch: concurrent.futures.Future  # -> container id
    started: float = 0.0
    container_id: str | None = None
    timed_out: bool = False
    times: tuple[float | None, float | None] = (None, None)  # the container's start and end


class Scheduler:
    """Runs one job's tasks as containers within the capacity, retrying and timing them out."""

    def __init__(self, store: LocalStore, job_id: str, config: dict):
        self.store = store
        self.job_id = job_id
        self.config = config
        self.spec = config["spec"]
        self.res = self.spec["resources"]
        n = self.spec["n_tasks"]
        self.tasks = {i: TaskStatus() for i in range(n)}
        self.pending = collections.deque((i, 1) for i in range(n))
        self.running: dict[int, Running] = {}
        self.finishing: dict[int, tuple[Running, concurrent.futures.Future]] = {}
        self.cancelled = False
        self.pool = concurrent.futures.ThreadPoolExecutor(DOCKER_THREADS)
        self.engine = docker_engine.client()

    def resume(self, state: dict) -> None:
        """Take over from a scheduler that died, from its state.json and the containers' labels."""
        self.tasks = {int(k): TaskStatus(**v) for k, v in state.get("tasks", {}).items()}
        self.pending.clear()
        containers = {(c.labels.get("spmd.task"), c.labels.get("spmd.attempt")): c for c in
                      self.engine.containers.list(all=True, filters={"label": f"{LABEL_JOB}={self.job_id}"})}
        for task, status in sorted(self.tasks.items()):
            if status.state == PENDING:
                self.pending.append((task, status.attempts + 1))
            elif status.state == RUNNING:
                container = containers.get((str(task), str(status.attempts)))
                launch = concurrent.futures.Future()
                run = Running(status.attempts, launch)
                if container is None:
                    self.settle(task, run, TaskStatus(FAILED, status.attempts, None,
                                                      "its container was lost with the scheduler", "error"))
                    continue
                launch.set_result(container.id)
                run.container_id, run.started = container.id, _started(container)
                self.running[task] = run
        log.info("resumed: %d running, %d pending", len(self.running), len(self.pending))

    def run(self) -> None:
        self.write_state()
        written = self.snapshot()
        while self.pending or self.running or self.finishing:
            if not self.cancelled and self.store.exists(queue_key(self.job_id, "cancel")):
                self.cancel_all()
            self.observe()
            self.collect()
            if not self.cancelled:
                self.start_what_fits()
            now = self.snapshot()
            if now != written:
                self.write_state()
                written = now
            time.sleep(TICK)
        self.write_state(done=True)
        self.pool.shutdown()

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
        with open(self.store.root / ".scheduler.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used_cpu, used_mem = self.used_by_others()
            cap = self.config["capacity"]
            cpu, mem = self.res["vcpus"], self.res["memory"]
            used_cpu += cpu * len(self.running)
            used_mem += mem * len(self.running)
            launches = []
            while self.pending and used_cpu + cpu <= cap["vcpus"] + 1e-9 \
                    and used_mem + mem <= cap["memory"]:
                task, attempt = self.pending.popleft()
                launch = self.pool.submit(self.launch, task, attempt)
                self.running[task] = Running(attempt, launch)
                # A retry keeps the reason the previous attempt failed, for the client's log.
                reason = self.tasks[task].reason if attempt > 1 else ""
                self.tasks[task] = TaskStatus(RUNNING, attempt, None, reason)
                launches.append(launch)
                used_cpu += cpu
                used_mem += mem
            # Hold the lock until these containers exist, so other jobs' schedulers count them.
            concurrent.futures.wait(launches)

    def used_by_others(self) -> tuple[float, int]:
        """CPU and memory held by running spmd containers of other jobs on this engine."""
        cpu, mem = 0.0, 0
        for container in self.engine.containers.list(filters={"label": LABEL_MANAGED}, sparse=True):
            labels = container.attrs.get("Labels") or {}
            if labels.get(LABEL_JOB) != self.job_id:
                cpu += float(labels.get("spmd.vcpus", 0))
                mem += int(labels.get("spmd.memory", 0))
        return cpu, mem

    def launch(self, task: int, attempt: int) -> str:
        """Create and start the task's container; returns its id (runs on the pool)."""
        spec, res = self.spec, self.res
        root = self.config["store_root"]
        env = {**spec["env"], "AWS_BATCH_JOB_ARRAY_INDEX": str(task),
               "SPMD_ATTEMPT": str(attempt), "SPMD_IMAGE": spec["image"]}
        container = self.engine.containers.run(
            spec["image"], list(spec["command"]), name=f"spmd-{self.job_id}-{task}-a{attempt}",
            detach=True, environment=env,
            labels={LABEL_MANAGED: "1", LABEL_JOB: self.job_id, "spmd.task": str(task),
                    "spmd.attempt": str(attempt), "spmd.vcpus": str(res["vcpus"]),
                    "spmd.memory": str(res["memory"])},
            volumes={root: {"bind": root, "mode": "rw"}},
            nano_cpus=int(res["vcpus"] * 1e9), mem_limit=res["memory"],
            memswap_limit=res["memory"], user=f"{self.config['uid']}:{self.config['gid']}")
        log.info("task %d attempt %d started as %s", task, attempt, container.name)
        return container.id

    # -- watching -------------------------------------------------------------

    def observe(self) -> None:
        """Find exited and overdue containers with one list call."""
        if not self.running:
            return
        live = {c.id: c.status for c in self.engine.containers.list(
            all=True, filters={"label": f"{LABEL_JOB}={self.job_id}"}, sparse=True)}
        for task, run in list(self.running.items()):
            if run.container_id is None:
                if not run.launch.done():
                    continue
                try:
                    run.container_id = run.launch.result()
                    run.started = time.monotonic()
                except Exception as exc:  # the task fails; the others go on
                    log.error("cannot start task %d: %s", task, exc)
                    del self.running[task]
                    self.append_log(task, run.attempt, f"spmd: the container could not start: {exc}\n")
                    self.settle(task, run, TaskStatus(FAILED, run.attempt, None,
                                                      f"the container could not start: {exc}", "error"))
                    continue
                if self.cancelled:
                    self.kill(run.container_id)
                continue  # a container started after the list call is looked at next tick
            status = live.get(run.container_id, "removed")
            if status in ("exited", "dead", "removed"):
                del self.running[task]
                self.finishing[task] = (run, self.pool.submit(self.wrap_up, task, run))
            elif self.res["timeout"] and not run.timed_out \
                    and time.monotonic() - run.started > self.res["timeout"]:
                log.info("task %d timed out after %gs", task, self.res["timeout"])
                run.timed_out = True
                self.kill(run.container_id)

    def wrap_up(self, task: int, run: Running) -> TaskStatus:
        """Save an exited container's log, remove it, and say how the attempt ended (on the pool)."""
        from docker.errors import NotFound
        try:
            container = self.engine.containers.get(run.container_id)
            state = container.attrs["State"]
            exit_code, oom = state.get("ExitCode"), state.get("OOMKilled", False)
            run.times = (_epoch(state.get("StartedAt")), _epoch(state.get("FinishedAt")))
            text = container.logs(stdout=True, stderr=True).decode(errors="replace")
            if run.timed_out or self.cancelled:
                text += f"spmd: the task was {'timed out' if run.timed_out else 'cancelled'} and killed\n"
            self.append_log(task, run.attempt, text)
            container.remove(force=True)
        except NotFound:
            exit_code, oom = None, False
        res = self.res
        if run.timed_out:
            return TaskStatus(FAILED, run.attempt, exit_code, f"timed out after {res['timeout']:g}s",
                              "timeout")
        if self.cancelled:
            return TaskStatus(CANCELLED, run.attempt, exit_code, "cancelled", "cancelled")
        if exit_code == 0:
            return TaskStatus(SUCCEEDED, run.attempt, 0)
        if oom:
            return TaskStatus(FAILED, run.attempt, exit_code,
                              f"out of memory (limit {format_bytes(res['memory'])})", "oom")
        return TaskStatus(FAILED, run.attempt, exit_code, f"exited with code {exit_code}", "error")

    def collect(self) -> None:
        for task, (run, wrapping) in list(self.finishing.items()):
            if wrapping.done():
                del self.finishing[task]
                self.settle(task, run, wrapping.result())

    def settle(self, task: int, run: Running, status: TaskStatus) -> None:
        """Record how an attempt ended, queueing a retry where one is due."""
        status = replace(status, started=run.times[0], ended=run.times[1])
        if status.state == FAILED and status.lost != "timeout" and not self.cancelled \
                and run.attempt < self.res["retries"] + 1:
            log.info("task %d failed (%s); retrying, attempt %d", task, status.reason, run.attempt + 1)
            self.pending.append((task, run.attempt + 1))
            status = TaskStatus(PENDING, run.attempt, status.exit_code, status.reason, status.lost)
        self.tasks[task] = status

    def cancel_all(self) -> None:
        self.cancelled = True
        log.info("cancel asked: stopping %d running tasks, dropping %d pending",
                 len(self.running), len(self.pending))
        for run in self.running.values():
            if run.container_id:
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
            pass  # already gone

    def append_log(self, task: int, attempt: int, text: str) -> None:
        """Keep the task's log in the store, every attempt, so it outlives the container."""
        key = layout.log_key(self.job_id, task)
        try:
            before = self.store.get(key).decode(errors="replace")
        except ObjectNotFound:
            before = ""
        header = f"--- spmd: attempt {attempt} ---\n" if attempt > 1 or before else ""
        self.store.put(key, (before + header + text).encode())


def _epoch(text: str | None) -> float | None:
    """Docker's RFC 3339 time (nanoseconds, Z) as epoch seconds; None when unset."""
    text = (text or "")[:26].rstrip("Z")
    try:
        when = datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None
    return when if when > 0 else None  # "0001-01-01T00:00:00Z" means never


def _started(container) -> float:
    """The container's start as a time.monotonic() value, for its timeout."""
    text = container.attrs["State"].get("StartedAt", "")[:26].rstrip("Z")
    try:
        started = datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return time.monotonic()
    return time.monotonic() - max(0.0, time.time() - started)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    root, job_id = argv
    store = LocalStore(root)
    lock = open(store.path(queue_key(job_id, "scheduler.lock")), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until this process ends
    except BlockingIOError:
        log.info("another scheduler runs job %s; leaving it to that one", job_id)
        return 0
    scheduler = Scheduler(store, job_id, store.get_json(queue_key(job_id, "spec.json")))
    try:
        state = store.get_json(queue_key(job_id, "state.json"))
    except ObjectNotFound:
        state = None
    if state and state.get("done"):
        return 0
    try:
        if state:
            scheduler.resume(state)
        scheduler.run()
    except BaseException as exc:
        log.error("scheduler failed: %s", traceback.format_exc())
        reason = f"the local scheduler failed: {type(exc).__name__}: {exc}"
        for task, status in scheduler.tasks.items():
            if status.state in (PENDING, RUNNING):
                scheduler.tasks[task] = TaskStatus(FAILED, status.attempts, None, reason, "error")
        for run in scheduler.running.values():
            if run.container_id:
                scheduler.kill(run.container_id)
        scheduler.write_state(done=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
