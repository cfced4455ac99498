"""Job: the client's view of one map, rebuilt from the store by ``attach``.

    store: output/ prefix ──(one LIST per poll)──> new outputs ──> futures resolved
    queue: states(handle) ──> RUNNING futures; tasks that ended without output ──>
           TaskLost (with reason and log tail) or cancelled futures

A watcher thread polls until every future is done. Nothing about the job lives only
in this object: a Job in another process, made by ``attach(job_id)``, sees the same.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import Counter
from typing import Any, Iterable, Iterator

from . import codec, layout
from .backend import Backend
from .batch_queue import CANCELLED, PENDING, RUNNING, STATES, TERMINAL, TaskStatus
from .errors import JobNotFound, ObjectNotFound, TaskLost, TaskOutOfMemory, TaskTimedOut
from .future import Future
from .layout import Manifest

log = logging.getLogger("spmd")

LOG_TAIL_LINES = 30
LOG_WAIT_SECONDS = 60
_LOST = {"oom": TaskOutOfMemory, "timeout": TaskTimedOut}


class Job:
    """The futures of one map, in input order, and the controls of its tasks."""

    def __init__(self, backend: Backend, manifest: Manifest, handle: str, *, watch: bool = True):
        self.backend = backend
        self.manifest = manifest
        self.handle = handle
        self.futures: list[Future] = [Future(manifest.job_id, i) for i in range(manifest.n_items)]
        self._resolved: set[int] = set()
        self._retried: dict[int, int] = {}
        self._nonfinal: dict[int, int] = {}
        self._waiting_logged: set[str] = set()
        self._stop = threading.Event()
        self._interval = backend.settings.get("poll_interval") or backend.poll_interval
        self._watcher = threading.Thread(target=self._watch, daemon=True,
                                         name=f"spmd-watch-{manifest.job_id}")
        if watch:  # a one-off look (spmd status, spmd logs) needs no watcher
            self._watcher.start()

    @property
    def id(self) -> str:
        return self.manifest.job_id

    def __len__(self) -> int:
        return len(self.futures)

    def __iter__(self) -> Iterator[Future]:
        return iter(self.futures)

    def __repr__(self) -> str:
        done = sum(f.done() for f in self.futures)
        return f"<spmd.Job {self.id} {done}/{len(self)} done on {self.manifest.backend}>"

    # -- waiting ----------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every item is done and its task has ended; True if so, False on timeout."""
        _, not_done = concurrent.futures.wait(self.futures, timeout=timeout)
        if not not_done and self.handle:
            self._wait_ended(range(self.manifest.n_tasks), LOG_WAIT_SECONDS)
        return not not_done

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def results(self, timeout: float | None = None) -> list[Any]:
        """Every item's value in input order; raises the first item's error (in input order)."""
        if not self.wait(timeout):
            pending = sum(not f.done() for f in self.futures)
            raise TimeoutError(f"job {self.id}: {pending} of {len(self)} items not done "
                               f"after {timeout}s")
        return [f.result() for f in self.futures]

    # -- controls -----------------------------------------------------------------

    def cancel(self) -> None:
        """Stop running tasks and never start pending ones; finished results stay."""
        if self.handle:
            self.backend.queue.cancel(self.handle)

    def status(self) -> dict[str, int]:
        """How many tasks are in each state (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)."""
        states = self.backend.queue.states(self.handle) if self.handle else {}
        counts = Counter(states.get(t, TaskStatus()).state for t in range(self.manifest.n_tasks))
        return {state: counts.get(state, 0) for state in STATES}

    def logs(self, index: int) -> str:
        """The log text of the task that ran item index (every attempt)."""
        if not 0 <= index < len(self):
            raise IndexError(f"job {self.id} has items 0..{len(self) - 1}, not {index}")
        task = self.manifest.task_of(index)
        if self.futures[index].done():
            self._wait_ended([task], LOG_WAIT_SECONDS)
        return self.backend.queue.logs(self.handle, task)

    def _wait_ended(self, tasks: Iterable[int], seconds: float) -> None:
        """A result arrives when its task writes it; the task's log and final state come when it
        has ended, a moment later. Wait (boundedly) for that moment."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            states = self.backend.queue.states(self.handle)
            if all(states.get(t, TaskStatus()).state in TERMINAL for t in tasks):
                return
            time.sleep(self._interval)

    def provenance(self, index: int) -> dict:
        """Where and when the task of item index ran: start, end, attempt, peak memory, host, image."""
        output = codec.loads(self.backend.store.get(
            layout.output_key(self.id, self.manifest.task_of(index))))
        return output["provenance"]

    # -- watching -----------------------------------------------------------------

    def _watch(self) -> None:
        failures = 0
        while len(self._resolved) < self.manifest.n_tasks and not self._stop.is_set():
            try:
                self._poll()
                failures = 0
            except Exception:
                failures += 1
                log.warning("job %s: checking progress failed (%d in a row)", self.id, failures,
                            exc_info=True)
            self._stop.wait(min(self._interval * (1 + failures), 30))
        for future in self.futures:
            future._notify_if_cancelled()

    def _poll(self) -> None:
        store, queue = self.backend.store, self.backend.queue
        outputs = {layout.task_of_output_key(k): k for k in store.list(layout.output_prefix(self.id))}
        statuses = queue.states(self.handle)
        for task in range(self.manifest.n_tasks):
            if task in self._resolved:
                continue
            status = statuses.get(task, TaskStatus())
            if status.state == PENDING and status.reason and not status.attempts:
                if status.reason not in self._waiting_logged:  # e.g. MISCONFIGURATION:...
                    self._waiting_logged.add(status.reason)
                    log.warning("job %s: tasks wait to be placed: %s", self.id, status.reason)
            elif status.state in (PENDING, RUNNING) and status.reason \
                    and self._retried.get(task) != status.attempts:
                self._retried[task] = status.attempts
                log.info("job %s: task %d failed (%s); retrying (attempt %d)", self.id, task,
                         status.reason, status.attempts + (status.state == PENDING))
            seen_nonfinal = self._nonfinal.get(task) == status.attempts
            if (task in outputs and not seen_nonfinal) or status.state in TERMINAL:
                output = self._output(task)
                if output is not None and (output["final"] or status.state in TERMINAL):
                    self._resolve_output(task, output)
                elif output is None and status.state in TERMINAL:
                    self._resolve_lost(task, status)
                elif output is not None:
                    # An attempt failed and a retry is due: read the output again only once
                    # the queue reports another attempt or the end.
                    self._nonfinal[task] = status.attempts
            if status.state == RUNNING and task not in self._resolved:
                for index in self.manifest.items_of(task):
                    self.futures[index]._mark_running()

    def _output(self, task: int) -> dict | None:
        try:
            return codec.loads(self.backend.store.get(layout.output_key(self.id, task)))
        except ObjectNotFound:
            return None

    def _resolve_output(self, task: int, output: dict) -> None:
        for index, (kind, payload) in zip(self.manifest.items_of(task), output["results"]):
            future = self.futures[index]
            if kind == "ok":
                try:
                    future._set(True, codec.loads(payload))
                except Exception as exc:
                    future._set(False, exc)
            else:
                future._set(False, codec.rebuild_exception(payload))
        self._resolved.add(task)

    def _resolve_lost(self, task: int, status: TaskStatus) -> None:
        if status.lost == "cancelled" or status.state == CANCELLED:
            for index in self.manifest.items_of(task):
                self.futures[index]._cancel_remote()
        else:
            text = self.backend.queue.logs(self.handle, task)
            tail = "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])
            cls = _LOST.get(status.lost or "", TaskLost)
            for index in self.manifest.items_of(task):
                self.futures[index]._set(False, cls(status.reason or "ended without output",
                                                    job_id=self.id, task=task, log_tail=tail,
                                                    exit_code=status.exit_code))
        self._resolved.add(task)


def _futures_of(fs: Job | Iterable[concurrent.futures.Future]) -> list:
    return list(fs.futures) if isinstance(fs, Job) else list(fs)


def as_completed(fs: Job | Iterable[concurrent.futures.Future],
                 timeout: float | None = None) -> Iterator[concurrent.futures.Future]:
    """Futures of a job (or any futures) as they finish, like concurrent.futures.as_completed."""
    return concurrent.futures.as_completed(_futures_of(fs), timeout=timeout)


def wait(fs: Job | Iterable[concurrent.futures.Future], timeout: float | None = None,
         return_when: str = concurrent.futures.ALL_COMPLETED):
    """``(done, not_done)`` like concurrent.futures.wait; accepts a Job too."""
    return concurrent.futures.wait(_futures_of(fs), timeout=timeout, return_when=return_when)


def load(backend: Backend, job_id: str, *, watch: bool = True) -> Job:
    """The Job of job_id from the backend's store; ``watch`` starts resolving its futures."""
    store = backend.store
    try:
        manifest = Manifest.from_json(store.get(layout.manifest_key(job_id)))
    except ObjectNotFound:
        raise JobNotFound(job_id, store.url) from None
    try:
        handle = store.get_json(layout.queue_key(job_id))["handle"]
    except ObjectNotFound:
        handle = ""
    return Job(backend, manifest, handle, watch=watch)
