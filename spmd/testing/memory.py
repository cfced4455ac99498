"""An in-memory backend for tests: a store in a dict, a queue that runs tasks in threads.

No Docker, no images, no processes: tasks run ``spmd.task.worker.run_task`` in threads of this
process, so the task protocol, ``Job`` and the futures are tested in milliseconds::

    from spmd.testing import memory
    memory.register()                       # backend "memory" and store "memory://"
    knot = spmd.Knot(f, backend="memory", config={"memory_store": "t1"})
    knot.backend.queue.faults[3] = {1: memory.Fault("oom", "out of memory")}
    knot.backend.queue.hold()               # tasks wait at the start until release()

The backend exists only in a process that calls ``register()``: it is not offered to users
(``spmd backends``), since its tasks share the client's memory and limits are not enforced.
Backends (and attached clients) with the same ``memory_store`` share one store and queue.
Tasks cannot read their attempt from the environment here (threads share it).
"""
from __future__ import annotations

import concurrent.futures
import threading
import traceback
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from spmd import attempts, config
from spmd.attempts import Tally
from spmd.backend import Backend, Capacity
from spmd.batch_queue import (CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, TERMINAL, ArraySpec,
                              BatchQueue, TaskStatus)
from spmd.config import Key
from spmd.errors import ObjectNotFound
from spmd.hookspecs import hookimpl
from ..stores.object_store import ObjectStore

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


@dataclass
class _Array:
    spec: ArraySpec
    states: dict[int, TaskStatus]
    tallies: dict[int, Tally] = field(default_factory=dict)
    cancelled: bool = False


class MemoryQueue(BatchQueue):
    """Runs each task's attempts as ``run_task`` calls on a thread pool of ``slots`` threads.

    ``faults[task][attempt]`` makes that attempt end as the Fault says, without running;
    ``hold()`` makes tasks wait before they run until ``release()``.
    """

    def __init__(self, store: MemoryStore, slots: int):
        self.store = store
        self.slots = slots
        self.faults: dict[int, dict[int, Fault]] = {}
        self._arrays: dict[str, _Array] = {}
        self._logs: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()
        self._pool = concurrent.futures.ThreadPoolExecutor(slots, thread_name_prefix="spmd-memory")

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def submit(self, spec: ArraySpec) -> str:
        with self._lock:
            self._arrays[spec.job_id] = _Array(spec, {t: TaskStatus() for t in range(spec.n_tasks)})
        for task in range(spec.n_tasks):
            self._pool.submit(self._run, spec.job_id, task, 1)
        return spec.job_id

    def _run(self, handle: str, task: int, attempt: int) -> None:
        self._gate.wait()
        array = self._arrays[handle]
        with self._lock:
            if array.states[task].state in TERMINAL:  # cancelled before it started
                return
            array.states[task] = TaskStatus(RUNNING, attempt, None, array.states[task].reason,
                                            array.states[task].lost)
        fault = self.faults.get(task, {}).get(attempt)
        if fault is not None:
            self._log(handle, task, attempt, fault.log)
            self._ended(handle, task, TaskStatus(FAILED, attempt, fault.exit_code, fault.reason,
                                                 fault.lost))
            return
        from ..task.worker import run_task
        try:
            ok = run_task(self.store, handle, task, attempt,
                          array.tallies.get(task, Tally()).uncounted)
            status = TaskStatus(SUCCEEDED, attempt, 0) if ok else \
                TaskStatus(FAILED, attempt, 1, "exited with code 1", "error")
            self._log(handle, task, attempt, "" if ok else "a call failed\n")
        except Exception as exc:  # the worker itself failed: the task ends without output
            self._log(handle, task, attempt, traceback.format_exc())
            status = TaskStatus(FAILED, attempt, 1, f"the worker failed: {exc}", "error")
        self._ended(handle, task, status)

    def _ended(self, handle: str, task: int, status: TaskStatus) -> None:
        """Record how an attempt ended; retry it where the budgets allow (as the local queue)."""
        array = self._arrays[handle]
        retry = False
        with self._lock:
            if array.states[task].state in TERMINAL:
                return
            if status.state == FAILED and not array.cancelled:
                tally = array.tallies.get(task, Tally())
                decision = attempts.after(array.spec.resources, status.attempts, status.lost, tally)
                array.tallies[task] = decision.tally
                retry = decision.again
            if retry:
                status = TaskStatus(PENDING, status.attempts, status.exit_code, status.reason,
                                    status.lost)
            array.states[task] = status
        if retry:
            self._pool.submit(self._run, handle, task, status.attempts + 1)

    def _log(self, handle: str, task: int, attempt: int, text: str) -> None:
        with self._lock:
            before = self._logs.get((handle, task), "")
            header = f"--- spmd: attempt {attempt} ---\n" if attempt > 1 or before else ""
            self._logs[(handle, task)] = before + header + text

    def states(self, handle: str) -> Mapping[int, TaskStatus]:
        with self._lock:
            array = self._arrays.get(handle)
            return dict(array.states) if array else {}

    def cancel(self, handle: str) -> None:
        with self._lock:
            array = self._arrays.get(handle)
            if array is None:
                return
            array.cancelled = True
            for task, status in array.states.items():
                if status.state not in TERMINAL:
                    array.states[task] = TaskStatus(CANCELLED, status.attempts, None, "cancelled",
                                                    "cancelled")

    def logs(self, handle: str, task: int) -> str:
        with self._lock:
            return self._logs.get((handle, task), "")


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
        store, slots = self.store, max(1, int(self.capacity().vcpus))
        with _registry_lock:
            if self._name() not in _queues:
                _queues[self._name()] = MemoryQueue(store, slots)
            return _queues[self._name()]

    def capacity(self) -> Capacity:
        return Capacity(vcpus=self.settings.get("max_vcpus") or 2.0, memory=64 * 2**30)


def forget(name: str) -> None:
    """Drop the store and queue called name (a test's clean-up)."""
    with _registry_lock:
        _stores.pop(name, None)
        queue = _queues.pop(name, None)
    if queue is not None:
        queue.release()
        queue._pool.shutdown(wait=False, cancel_futures=True)
