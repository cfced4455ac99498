"""Job: the client's view of one map, rebuilt from the store by ``attach``.

    queue: states(handle) ──┐
    store: output/ listed after the last resolved task ──> outputs not yet read ──┤
                                                      protocol.resolve(...) <─────┘
        ──> futures: values / remote errors, TaskLost (with reason and log tail), cancelled;
            RUNNING futures

A watcher thread polls until every future is done. Nothing about the job lives only
in this object: a Job in another process, made by ``attach(job_id)``, sees the same.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
import weakref
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from . import budget
from .. import codec, layout, protocol, upstream
from ..backend import Backend
from ..batch_queue import PENDING, RUNNING, STATES, TERMINAL, TaskStatus
from ..errors import FailureBudgetSpent, JobNotFound, ObjectNotFound, ResultDamaged, WatchFailed
from .future import Future
from ..layout import Manifest

if TYPE_CHECKING:
    from ..report import Report

log = logging.getLogger("spmd")

LOG_TAIL_LINES = 30
LOG_TAIL_BYTES = 64 * 1024  # read from the log's end for its last lines
LOG_WAIT_SECONDS = 60
#: the watcher's error budget: this many failed checks in a row, spanning at least this many
#: seconds, end the unresolved futures with WatchFailed (a fault that passes sooner is retried)
WATCH_FAILURES = 10
WATCH_SECONDS = 120.0
#: the watcher's pace while results flow and tasks wait: the fast pace doubled this many times
FLOWING = 2


#: the Jobs of this process by id, so a chained map over a job's futures finds their job
_jobs: "weakref.WeakValueDictionary[str, Job]" = weakref.WeakValueDictionary()


class Job:
    """The futures of one map, in input order, and the controls of its tasks."""

    def __init__(self, backend: Backend, manifest: Manifest, handle: str, *, watch: bool = True):
        _jobs[manifest.job_id] = self
        self.backend = backend
        self.manifest = manifest
        self.handle = handle
        self.futures: list[Future] = [Future(manifest.job_id, i) for i in range(manifest.n_items)]
        #: what the map uploaded for its data references (spmd.data.UploadReport); None after attach
        self.uploads = None
        self._resolved: set[int] = set()
        self._retried: dict[int, int] = {}
        self._outputs: dict[int, protocol.TaskOutput | None] = {}  # latest read, unresolved tasks
        self._read_at: dict[int, int] = {}  # the queue's attempt count when each was read
        self._damaged: dict[int, ResultDamaged] = {}  # outputs there but not decodable
        self._job_data = None  # data.json (spmd.data.JobData), read on first need
        self._states: dict[int, TaskStatus] = {}  # the queue's states at the last poll
        self._waiting_logged: set[str] = set()
        self._ended: list[budget.Ended] = []  # items as they ended, for the failure budget
        self._budget_spent: str | None = None  # why, once it is
        self._stop = threading.Event()
        self._polling = threading.Lock()  # the watcher's polls and cancel's last one
        self._interval = backend.settings.get("poll_interval") or backend.poll_interval
        self._fast = min(self._interval, backend.poll_fast or self._interval)
        self._polls = 0  # checks made (the watcher's and cancel's)
        self._watcher = threading.Thread(target=self._watch, daemon=True,
                                         name=f"spmd-watch-{manifest.job_id}")
        #: results of items taken from earlier jobs (map's reuse=True), by item
        self.reused: dict = {}
        if manifest.reused:
            self._set_reused()
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

    def _repr_html_(self) -> str:  # Jupyter's view: tasks per state (spmd.html_report)
        from ..html_report import job_compact
        return job_compact(self)

    # -- waiting ----------------------------------------------------------------

    def wait(self, timeout: float | None = None, progress: bool | None = None) -> bool:
        """Wait until every item is done and its task has ended; True if so, False on timeout.

        ``progress`` shows a bar of tasks done/failed/running (default: in a terminal or a
        notebook, not under CI; see spmd.client.progress).
        """
        from . import progress as _progress
        if _progress.enabled(progress):
            return _progress.wait(self, timeout)
        return self._wait_plain(timeout)

    def _wait_plain(self, timeout: float | None) -> bool:
        _, not_done = concurrent.futures.wait(self.futures, timeout=timeout)
        if not not_done and self.handle:
            self._wait_ended(range(self.manifest.n_tasks), LOG_WAIT_SECONDS)
        return not not_done

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def results(self, timeout: float | None = None, progress: bool | None = None) -> list[Any]:
        """Every item's value in input order; raises the first item's error (in input order)."""
        if not self.wait(timeout, progress=progress):
            pending = sum(not f.done() for f in self.futures)
            raise TimeoutError(f"job {self.id}: {pending} of {len(self)} items not done "
                               f"after {timeout}s")
        return [f.result() for f in self.futures]

    # -- controls -----------------------------------------------------------------

    def cancel(self) -> None:
        """Stop running tasks and never start pending ones; finished results stay. When it
        returns, every item whose task had not finished reports ``cancelled()``."""
        if self.handle:
            self.backend.queue.cancel(self.handle)
        with self._polling:
            if self.handle:
                self._poll()  # results of tasks that finished before the cancel stay
            for task in range(self.manifest.n_tasks):
                if task not in self._resolved:
                    for index in self.manifest.items_of(task):
                        self.futures[index]._cancel_remote()
                    self._resolved.add(task)

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
        if task is None:
            source = self.reused.get(index)
            return f"spmd: item {index} was reused from job {source.job_id if source else '?'}\n"
        if self.futures[index].done():
            self._wait_ended([task], LOG_WAIT_SECONDS)
        return self.backend.queue.logs(self.handle, task)

    def download(self, index: int, dest: str | os.PathLike) -> list[Path]:
        """Fetch the files item index wrote under ``spmd.outputs()`` into the folder dest."""
        from .. import data
        self._check_index(index)
        destination = self._destination(index)
        if destination is not None:
            return data.download_published(destination, self._data().options, dest)
        return data.download(self.backend.store, self.id, index, dest)

    def output_urls(self, index: int) -> dict[str, str]:
        """The files item index wrote under ``spmd.outputs()``: relative path -> URL
        (``spmd.open_url`` opens one, in the client or in a task)."""
        from .. import data, remote
        self._check_index(index)
        destination = self._destination(index)
        if destination is not None:
            return remote.list_files(destination, self._data().options)
        return data.output_urls(self.backend.store, self.id, index)

    def _data(self):
        """The job's data.json (URL inputs, destinations), read once."""
        if self._job_data is None:
            from ..data import JobData
            self._job_data = JobData.load(self.backend.store, self.id)
        return self._job_data

    def _destination(self, index: int) -> str | None:
        if not self.manifest.outputs_to:
            return None
        return self._data().destination(index)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"job {self.id} has items 0..{len(self) - 1}, not {index}")

    def _wait_ended(self, tasks: Iterable[int], seconds: float) -> None:
        """A result arrives when its task writes it; the task's log and final state come when it
        has ended, a moment later. Wait (boundedly) for that moment, looking again soon."""
        deadline, looks = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            states = self.backend.queue.states(self.handle)
            if all(states.get(t, TaskStatus()).state in TERMINAL for t in tasks):
                return
            time.sleep(self._pause(looks))
            looks += 1

    def _quiet_after(self, moved: bool, quiet: int) -> int:
        """The pace after a check (see ``_pause``): nothing moved, one step slower; the job
        moved, the fast pace where a result is awaited soon (``_eager``), else FLOWING steps
        (results flow while tasks wait: several are gathered per check, at a few checks a
        second rather than dozens)."""
        if not moved:
            return quiet + 1
        return 0 if self._eager() else FLOWING

    def _eager(self) -> bool:
        """Whether a result is awaited soon: none has come yet (right after submit), or no
        task waits to start (the job's tail)."""
        return not self._resolved or not any(s.state == PENDING for s in self._states.values())

    def _pause(self, quiet: int) -> float:
        """Seconds before the next check after ``quiet`` checks in a row saw nothing move:
        the backend's fast pace, doubling up to the poll interval, so that the first results
        and the last are seen within tens of milliseconds and an idle job is checked at the
        configured pace."""
        return min(self._interval, self._fast * 2 ** min(quiet, 30))

    def provenance(self, index: int) -> dict:
        """Where and when the task of item index ran: start, end, attempt, peak memory, host, image."""
        task = self.manifest.task_of(index)
        if task is None:  # reused: where and when its earlier job computed it
            source = self.reused.get(index)
            if source is None:
                raise ObjectNotFound(layout.reused_key(self.id))
            return {**source.provenance, "reused_from": source.job_id}
        output = protocol.read_output(self.backend.store, self.id, task)
        if output is None:
            raise ObjectNotFound(layout.output_key(self.id, task))
        return dataclasses.asdict(output.provenance)

    def report(self) -> "Report":
        """One row per item: times, attempts and why each ended, peak memory, host, image
        digest and state, lost tasks included (see spmd.report)."""
        from ..report import build
        return build(self)

    def _set_reused(self) -> None:
        from ..reuse import load_reused
        try:
            self.reused = load_reused(self.backend.store, self.id)
        except ResultDamaged as error:
            for index in self.manifest.reused:
                self.futures[index]._set(False, error)
            return
        for index in self.manifest.reused:
            try:
                self.futures[index]._set(True, self.reused[index].value.load())
            except Exception as exc:  # a value this client cannot unpickle (or a lost record)
                self.futures[index]._set(False, exc)

    # -- watching -----------------------------------------------------------------

    def _watch(self) -> None:
        failures, since, quiet = 0, 0.0, 0
        while len(self._resolved) < self.manifest.n_tasks and not self._stop.is_set():
            try:
                with self._polling:
                    moved = self._poll()
                quiet = self._quiet_after(moved, quiet)
                failures = 0
            except Exception as exc:
                failures += 1
                since = since if failures > 1 else time.monotonic()
                log.warning("job %s: checking progress failed (%d in a row)", self.id, failures,
                            exc_info=True)
                spent = time.monotonic() - since
                if failures >= WATCH_FAILURES and spent >= WATCH_SECONDS:
                    self._give_up(WatchFailed(self.id, failures, spent, f"{type(exc).__name__}: {exc}"))
                    break
            self._stop.wait(min(self._interval * (1 + failures), 30) if failures
                            else self._pause(quiet))
        for future in self.futures:
            future._notify_if_cancelled()

    def _give_up(self, error: WatchFailed) -> None:
        """The error budget is spent: every future not yet resolved ends with error."""
        log.error("%s", error)
        for future in self.futures:
            if not future.done():
                future._set(False, error)

    def _poll(self) -> bool:
        """Gather the inputs of ``protocol.resolve`` (queue states first, then the new outputs,
        so an ended task's output is always listed) and apply what it decides. True when the
        job moved: the queue's states changed, or an output was read."""
        self._polls += 1
        store, tasks = self.backend.store, range(self.manifest.n_tasks)
        statuses = self.backend.queue.states(self.handle)
        self.backend.queue.advance(self.handle, statuses)  # the watcher acts; readers do not
        moved = statuses != self._states
        self._states = dict(statuses)
        start = protocol.listing_start(self.id, tasks, self._resolved)
        listed = [layout.task_of_output_key(k)
                  for k in store.list_after(layout.output_prefix(self.id), start)]
        for task in protocol.outputs_to_read(tasks, listed, statuses, self._read_at, self._resolved):
            moved = True
            try:
                self._outputs[task] = protocol.read_output(store, self.id, task)
                self._damaged.pop(task, None)
            except ResultDamaged as exc:  # fails the task's own items, once the queue is done with it
                self._damaged[task] = exc
                self._outputs.pop(task, None)
            self._read_at[task] = statuses.get(task, TaskStatus()).attempts
        for task, error in list(self._damaged.items()):
            if task not in self._resolved and statuses.get(task, TaskStatus()).state in TERMINAL:
                log.error("job %s: %s", self.id, error)
                for index in self.manifest.items_of(task):
                    self.futures[index]._set(False, error)
                self._resolved.add(task)
                del self._damaged[task]
        self._log_retries(statuses)
        step = protocol.resolve(tasks, self._outputs, statuses, self._resolved,
                                wait_for_queue=self.manifest.outputs_wait_for_queue)
        for resolution in step.resolutions:
            self._apply(resolution)
        self._check_budget()
        for task in step.running:
            for index in self.manifest.items_of(task):
                self.futures[index]._mark_running()
        return moved

    def _log_retries(self, statuses: dict[int, TaskStatus]) -> None:
        for task, status in statuses.items():
            if status.state == PENDING and status.reason and not status.attempts:
                if status.reason not in self._waiting_logged:  # e.g. MISCONFIGURATION:...
                    self._waiting_logged.add(status.reason)
                    log.warning("job %s: tasks wait to be placed: %s", self.id, status.reason)
            elif status.state in (PENDING, RUNNING) and status.reason and task not in self._resolved \
                    and self._retried.get(task) != status.attempts:
                self._retried[task] = status.attempts
                log.info("job %s: task %d failed (%s); retrying (attempt %d)", self.id, task,
                         status.reason, status.attempts + (status.state == PENDING))

    def _apply(self, resolution: protocol.Resolution) -> None:
        task, items = resolution.task, self.manifest.items_of(resolution.task)
        if resolution.kind != "output" and self.manifest.chained:
            # an engine that does not run an item whose input failed (Batch's "Dependent Job
            # failed", Slurm's unsatisfiable aftercorr): say which input, as the task would
            failed = {i: e for i in items
                      if (e := upstream.upstream_failure(self.backend.store, self.manifest.after, i))}
            for index, error in failed.items():
                self._end(index, False, error)
            items = [i for i in items if i not in failed]
        if resolution.kind == "output":
            for index, (kind, payload) in zip(items, resolution.output.results):
                if kind == protocol.OK:
                    try:
                        self._end(index, True, payload.load())
                    except Exception as exc:
                        self._end(index, False, exc)
                else:
                    self._end(index, False, codec.rebuild_exception(payload))
        elif resolution.kind == "cancelled":
            for index in items:
                if self._budget_spent:
                    self.futures[index]._set(False, FailureBudgetSpent(self.id, self._budget_spent))
                else:
                    self.futures[index]._cancel_remote()
        else:
            text = self.backend.queue.log_part(self.handle, task, -LOG_TAIL_BYTES)[0].decode(errors="replace")
            tail = "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:])
            for index in items:
                self._end(index, False, resolution.lost_error(self.id, tail))
        self._resolved.add(task)
        self._outputs.pop(task, None)  # the futures hold what they need


    def _end(self, index: int, ok: bool, value: Any) -> None:
        """Resolve an item's future, and count it for the failure budget."""
        self.futures[index]._set(ok, value)
        self._ended.append(budget.Ended(index) if ok else
                           budget.Ended(index, type(value).__name__, str(value)))

    def _check_budget(self) -> None:
        """Once the failure budget is spent, cancel what has not started (once; any client
        that watches the job, or attaches to it later, does this)."""
        if self._budget_spent or not self.handle:
            return
        why = budget.spent(self.manifest.max_failures, self._ended)
        if why is None:
            return
        self._budget_spent = why
        log.error("job %s: the failure budget is spent (%s); cancelling the items that have "
                  "not started", self.id, why)
        self.backend.queue.cancel_pending(self.handle)


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
