"""An in-memory backend for tests: a store in a dict, the scheduler core and its tasks on threads.

No Docker, no images, no processes. Each job runs spmd's scheduler core (``spmd.scheduling``:
its state machine, retries, timeouts, cancel, failure budget, state.json and task logs) on a
thread of this process, the same as the local and process backends run it in a process; its
runner runs each attempt as a ``spmd.task.worker.run_task`` call on a thread of its own::

    submit ──> spec.json ──> Scheduler (a thread per job) ──> state.json, logs/<task>.log
                                 │ start / poll / kill, under one capacity for all jobs
                                 └──> MemoryRunner: a thread per attempt, which waits while
                                      held, then ends as faults[task][attempt] says or runs
                                      run_task (exit 0, or 1 when a call failed)

    from spmd.testing import memory
    memory.register()                       # backend "memory" and store "memory://"
    knot = spmd.Knot(f, backend="memory", config={"memory_store": "t1"})
    knot.backend.queue.faults[3] = {1: memory.Fault("oom", "out of memory")}
    knot.backend.queue.hold()               # started attempts wait until release()

The backend exists only in a process that calls ``register()``: it is not offered to users
(``spmd backends``), since its tasks share the client's memory and limits are not enforced.
Backends (and attached clients) with the same ``memory_store`` share one store and queue.
Tasks cannot read their attempt from the environment here (threads share it).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import ContextManager, Iterator, Mapping

from spmd import config, layout, protocol
from spmd.backend import Backend, Capacity
from spmd.batch_queue import ArraySpec, BatchQueue, TaskStatus
from spmd.config import Key
from spmd.errors import ObjectNotFound
from spmd.hookspecs import hookimpl
from ..scheduling.core import STATE_EVERY, Scheduler, queue_key
from ..scheduling.runner import Attempt, Outcome, Runner
from ..stores.object_store import ObjectStore

log = logging.getLogger("spmd.scheduler")

ATTEMPT_THREADS = 64

_stores: dict[str, "MemoryStore"] = {}
_queues: dict[str, "MemoryQueue"] = {}
_registry_lock = threading.Lock()


def register() -> None:
    """Make backend "memory" and store scheme "memory://" available in this process."""
    import sys
    from spmd.plugins import add_plugin
    add_plugin(sys.modules[__name__], name="spmd.testing.memory")


@hookimpl
def spmd_register_backends(register):
    register("memory", "spmd.testing.memory:MemoryBackend")


@hookimpl
def spmd_register_stores(register):
    register("memory", "spmd.testing.memory:MemoryStore")


class MemoryStore(ObjectStore):
    """Objects in a dict, shared by every MemoryStore of the same name in this process."""

    scheme = "memory"

    def __init__(self, name: str = "default"):
        self.name = name
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> "MemoryStore":
        with _registry_lock:
            return _stores.setdefault(name, cls(name))

    @classmethod
    def from_url(cls, url: str) -> "MemoryStore":
        if not url.startswith("memory://"):
            raise ValueError(f"not a memory:// URL: {url!r}")
        return cls.named(url[len("memory://"):])

    @property
    def url(self) -> str:
        return f"memory://{self.name}"

    def put(self, key: str, data: bytes) -> None:
        data = bytes(data)
        with self._lock:
            self._objects[key] = data

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        with self._lock:
            try:
                data = self._objects[key]
            except KeyError:
                raise ObjectNotFound(key) from None
        if start is None and end is None:
            return data
        return data[start or 0:end]

    def list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            return iter(sorted(k for k in self._objects if k.startswith(prefix)))

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)


@dataclass(frozen=True)
class Fault:
    """An attempt that does not run and ends as the queue says: lost kind, reason, log text."""

    lost: str
    reason: str
    log: str = ""
    exit_code: int | None = None

    def outcome(self) -> Outcome:
        """The attempt's end as its runner reports it; the scheduler core judges it."""
        return Outcome(self.exit_code, self.log, lost=self.lost, reason=self.reason)


@dataclass
class _Slot:
    """One attempt the runner was asked to start: its memory, from when it runs, whether killed."""

    memory: int
    started: float | None = None
    killed: bool = False


class MemoryRunner(Runner):
    """Each attempt is a call of ``run_task`` (or ends as its Fault says) on the queue's threads.

    A thread cannot be stopped: ``kill`` reports the attempt ended at once (SIGKILL's code),
    and a thread already running goes on unseen, as a process the kernel failed to kill.
    While the queue is held, attempts wait before they run; after ``release()`` they go
    once the scheduler has polled twice, so a cancel asked while held is seen first.
    """

    def __init__(self, queue: "MemoryQueue", job_id: str, vcpus: float):
        self.queue = queue
        self.job_id = job_id
        self.vcpus = vcpus
        self.slots: dict[int, _Slot] = {}
        self._ended: "SimpleQueue[tuple[int, Outcome]]" = SimpleQueue()
        self._lock = threading.Lock()
        self.go = threading.Event()  # cleared while the queue is held
        if not queue.held:
            self.go.set()
        self._release_seen = False

    def start(self, attempts: list[Attempt]) -> dict[int, Outcome]:
        for a in attempts:
            slot = _Slot(a.memory)
            with self._lock:
                self.slots[a.task] = slot
            self.queue.pool.submit(self._run, a, slot)
        return {}

    def _run(self, a: Attempt, slot: _Slot) -> None:
        self.go.wait()
        with self._lock:
            if slot.killed:
                return
            slot.started = time.monotonic()
        fault = self.queue.faults.get(a.task, {}).get(a.number)
        outcome = fault.outcome() if fault is not None else self._call(a)
        with self._lock:
            if slot.killed:
                return
            del self.slots[a.task]
        self._ended.put((a.task, outcome))

    def _call(self, a: Attempt) -> Outcome:
        from ..task.worker import run_task
        try:
            ok = run_task(self.queue.store, self.job_id, a.task, a.number,
                          int(a.env[protocol.INFRA_LOST]))
        except BaseException as exc:  # the worker itself failed: the task ends without output
            return Outcome(1, traceback.format_exc(), reason=f"the worker failed: {exc}")
        return Outcome(0) if ok else Outcome(1, "a call failed\n")

    def poll(self, timeout: float) -> dict[int, Outcome]:
        if self.queue.held:
            self._release_seen = False
        elif not self.go.is_set():
            if self._release_seen:  # the scheduler looked for a cancel since the release
                self.go.set()
            self._release_seen = True
        try:
            task, outcome = self._ended.get(timeout=timeout)
        except Empty:
            return {}
        ended = {task: outcome}
        while not self._ended.empty():
            task, outcome = self._ended.get()
            ended[task] = outcome
        return ended

    def started_at(self, task: int) -> float | None:
        with self._lock:
            slot = self.slots.get(task)
            return slot.started if slot else None

    def kill(self, task: int) -> None:
        with self._lock:
            slot = self.slots.pop(task, None)
            if slot is None:
                return
            slot.killed = True
        self._ended.put((task, Outcome(-signal.SIGKILL)))

    def running(self) -> tuple[float, int]:
        """vCPUs and memory this job's attempts hold."""
        with self._lock:
            return self.vcpus * len(self.slots), sum(s.memory for s in self.slots.values())

    def used_by_others(self) -> tuple[float, int]:
        usage = [r.running() for r in self.queue.runners() if r is not self]
        return sum(c for c, _ in usage), sum(m for _, m in usage)

    def close(self) -> None:
        self.go.set()  # attempts still held were killed: let their threads see it and return
        self.queue.closed(self)


class _Statuses(dict):
    """Task statuses that count the changes of a task's state or attempts as they are made."""

    changes = 0

    def __setitem__(self, task: int, status: TaskStatus) -> None:
        old = self.get(task)
        if old is None or (old.state, old.attempts) != (status.state, status.attempts):
            self.changes += 1
        super().__setitem__(task, status)


class _MemoryScheduler(Scheduler):
    """The scheduler core with its three directory steps done in memory, and its state.json
    written at a pace for attempts that last a millisecond (``snapshot``, ``state_due``)."""

    def __init__(self, queue: "MemoryQueue", job_id: str, config: dict, runner: MemoryRunner):
        super().__init__(queue.store, job_id, config, runner)
        self.queue = queue
        self.write_cost = 0.0  # seconds the last state.json took
        self.tasks = _Statuses(self.tasks)

    def snapshot(self) -> int:
        """What the core compares to decide state.json changed: here the count of changes,
        not every task's state, which the loop (once per ended attempt) would copy each time."""
        return self.tasks.changes

    def capacity_lock(self) -> ContextManager:
        return self.queue.capacity_lock

    def append_log(self, task: int, attempt: int, text: str) -> None:
        """The task's log in the dict; never cut (this backend enforces no limit)."""
        key = layout.log_key(self.job_id, task)
        try:
            before = self.store.get(key)
        except ObjectNotFound:
            before = b""
        header = f"--- spmd: attempt {attempt} ---\n" if attempt > 1 or before else ""
        self.store.put(key, before + (header + text).encode())

    def remove_secrets(self) -> None:
        """Nothing to remove: this backend takes no secrets."""

    def write_state(self, done: bool = False) -> None:
        began = time.monotonic()
        super().write_state(done)
        self.write_cost = time.monotonic() - began

    def state_due(self) -> bool:
        """Once per STATE_EVERY, or per ten writes' time when a write takes longer (a large
        array), until the job has nothing left to run. Attempts here end within a millisecond
        of their start, so "none running" (the core's cue) holds between nearly any two, and
        the thread would spend its time rewriting every task's state."""
        pause = max(STATE_EVERY, 10 * self.write_cost)
        return time.monotonic() - self.written >= pause \
            or not (self.running or self.pending or self.waiting)


def _schedule(scheduler: Scheduler) -> None:
    """A scheduler thread: run the job; if the core itself fails, end it saying why (as
    ``spmd.scheduling.core.main`` does for a scheduler process)."""
    try:
        scheduler.run()
    except Exception as exc:
        log.error("scheduler of job %s failed: %s", scheduler.job_id, traceback.format_exc())
        scheduler.fail_all(f"the memory scheduler failed: {type(exc).__name__}: {exc}")


class MemoryQueue(BatchQueue):
    """Runs each array with the scheduler core on a thread, within one capacity for all jobs.

    ``faults[task][attempt]`` makes that attempt end as the Fault says, without running;
    ``hold()`` makes started attempts wait before they run (the core sees them starting)
    until ``release()``.
    """

    grows_memory = True  # the core runs an attempt killed for memory again at the next size
    caps_parallel = True  # the core starts at most max_parallel attempts at once

    def __init__(self, store: MemoryStore, capacity: Capacity):
        self.store = store
        self.capacity = capacity
        self.faults: dict[int, dict[int, Fault]] = {}
        self.capacity_lock = threading.Lock()  # the core's lock while a job claims capacity
        self.held = False
        self._runners: list[MemoryRunner] = []
        self._read: dict[str, tuple[bytes, dict[int, TaskStatus]]] = {}  # state.json last parsed
        # Threads kept for the attempts (starting a thread costs a GIL handover, milliseconds
        # under load); more than the capacity runs, as killed attempts may still hold some.
        self.pool = ThreadPoolExecutor(ATTEMPT_THREADS, thread_name_prefix="spmd-memory")

    def hold(self) -> None:
        with self.capacity_lock:
            self.held = True
            for runner in self._runners:
                runner.go.clear()

    def release(self) -> None:
        self.held = False

    def submit(self, spec: ArraySpec) -> str:
        self.capacity.slots(spec.resources, "memory")  # ResourceError if a task can never start
        config = {"spec": dataclasses.asdict(spec), "capacity": dataclasses.asdict(self.capacity)}
        self.store.put_json(queue_key(spec.job_id, "spec.json"), config)
        with self.capacity_lock:
            runner = MemoryRunner(self, spec.job_id, spec.resources.vcpus)
            self._runners.append(runner)
        scheduler = _MemoryScheduler(self, spec.job_id, config, runner)
        threading.Thread(target=_schedule, args=(scheduler,), daemon=True,
                         name=f"spmd-memory-{spec.job_id}").start()
        return spec.job_id

    def runners(self) -> list[MemoryRunner]:
        """The runners of the jobs still running (read under ``capacity_lock``)."""
        return list(self._runners)

    def closed(self, runner: MemoryRunner) -> None:
        with self.capacity_lock:
            if runner in self._runners:
                self._runners.remove(runner)

    def states(self, handle: str) -> Mapping[int, TaskStatus]:
        """From the job's state.json, parsed again only when its scheduler rewrote it (the
        client polls every 10 ms, and the file holds every task)."""
        try:
            data = self.store.get(queue_key(handle, "state.json"))
        except ObjectNotFound:  # its scheduler has not written yet
            try:
                n_tasks = self.store.get_json(queue_key(handle, "spec.json"))["spec"]["n_tasks"]
            except ObjectNotFound:
                return {}
            return {i: TaskStatus() for i in range(n_tasks)}
        with self.capacity_lock:
            read, tasks = self._read.get(handle, (b"", {}))
        if data != read:
            tasks = {int(k): TaskStatus(**v) for k, v in json.loads(data)["tasks"].items()}
            with self.capacity_lock:
                self._read[handle] = (data, tasks)
        return dict(tasks)

    def cancel(self, handle: str) -> None:
        self.store.put(queue_key(handle, "cancel"), b"cancelled\n")  # the core looks every tick

    def cancel_pending(self, handle: str) -> None:
        self.store.put(queue_key(handle, "cancel_pending"), b"the failure budget is spent\n")

    def logs(self, handle: str, task: int) -> str:
        try:
            return self.store.get(layout.log_key(handle, task)).decode(errors="replace")
        except ObjectNotFound:
            return ""

    def close(self) -> None:
        """Cancel every job still running and let held attempts go (a test's clean-up)."""
        with self.capacity_lock:
            jobs = [r.job_id for r in self._runners]
        for job_id in jobs:
            self.cancel(job_id)
        self.release()
        self.pool.shutdown(wait=False)


class MemoryBackend(Backend):
    """Store and queue in this process; no images. For tests of the core, not for users."""

    name = "memory"
    config_keys = (
        Key("memory_store", config.text, "name of the in-memory store and queue (memory backend)",
            "default"),
        Key("max_vcpus", config.positive_float, "CPUs all running tasks may use together"),
    )
    runtime_packages = ("spmd",)
    uses_images = False
    poll_interval = 0.01

    def _name(self) -> str:
        return self.settings.get("memory_store") or "default"

    def make_store(self) -> MemoryStore:
        return MemoryStore.named(self._name())

    def make_registry(self):
        raise NotImplementedError("the memory backend runs tasks without images")

    def make_queue(self) -> MemoryQueue:
        store, capacity = self.store, self.capacity()
        with _registry_lock:
            if self._name() not in _queues:
                _queues[self._name()] = MemoryQueue(store, capacity)
            return _queues[self._name()]

    def capacity(self) -> Capacity:
        return Capacity(vcpus=self.settings.get("max_vcpus") or 2.0, memory=64 * 2**30)


def forget(name: str) -> None:
    """Drop the store and queue called name (a test's clean-up)."""
    with _registry_lock:
        _stores.pop(name, None)
        queue = _queues.pop(name, None)
    if queue is not None:
        queue.close()
