"""The scheduler core: one detached process per job, shared by every backend that schedules
on this machine (the local Docker backend, the process plugin). A backend supplies a Runner.

    spec.json ──> pending (task, attempt) ──> start while the capacity allows
        (warm slots the job already holds first; then, under a file lock shared by every
         scheduler of the store, as many as fit beside the other jobs' usage)
    each event or tick: ended attempts ──> log saved ──> SUCCEEDED / retry (PENDING) / FAILED
        attempts past the timeout ──> killed ──> FAILED, timed out (never retried)
        cancel marker ──> kill running, never start pending ──> CANCELLED
    every change ──> state.json (atomic), with this pid and ``done``

Retries: ``retries`` more attempts after errors in the user's code (and out-of-memory);
``infra_retries`` more after losses to the infrastructure, counted apart, and after an
attempt told to stop from outside that saved its checkpoint (exit REQUEUE_EXIT: "requeue").
With more memory sizes (``Resources.more_memory``), an attempt killed for its memory runs again at once at
the next size, in a new container limit (SPMD_MEMORY tells the runner), and ``retries``
count again from there. The state lives
in the store (state.json, each task's log), never only in this process: a new scheduler
resumes from it and the runner's ``adopt``.

The store is read and written through ``ObjectStore`` methods, but for three steps that need
a directory: the capacity lock (a file every scheduler of the machine flocks), appending a
task's log (cut in place, ``spmd.logcap``) and removing the job's secrets. Each is a method
of its own, so a scheduler in another setting overrides just those (``spmd.testing.memory``
runs this class on a thread, its store a dict, its lock the queue's).
"""
from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import replace
from typing import Callable, Iterator

from spmd import attempts, layout, logcap, protocol, secrets
from spmd.attempts import Tally
from spmd.batch_queue import (CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, TERMINAL, ArraySpec,
                              TaskStatus)
from spmd.errors import ObjectNotFound
from spmd.units import format_bytes

from . import engine
from .hostdata import HostData
from .runner import Attempt, Outcome, Runner
from ..stores.directory import DirectoryStore
from ..stores.object_store import ObjectStore

log = logging.getLogger("spmd.scheduler")

TICK = 0.1
LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
STATE_EVERY = 0.05


def queue_key(job_id: str, name: str) -> str:
    """Where a job's scheduler keeps its files in the store (spec, state, cancel, lock, log)."""
    return f"{layout.prefix(job_id)}queue/{name}"


class Scheduler:
    """Runs one job's tasks through a Runner within the capacity, retrying and timing them out."""

    def __init__(self, store: ObjectStore, job_id: str, config: dict, runner: Runner | None):
        """store: a DirectoryStore, unless a subclass overrides capacity_lock, append_log and
        remove_secrets (the only steps that need a directory)."""
        self.store = store
        self.job_id = job_id
        self.config = config
        self.spec = ArraySpec.from_dict(config["spec"])  # read once, typed
        self.resources = self.spec.resources
        self.runner = runner
        n = self.spec.n_tasks
        self.tasks = {i: TaskStatus() for i in range(n)}
        self.pending = collections.deque((i, 1) for i in range(n))
        self.running: dict[int, int] = {}  # task -> attempt
        self.infra_lost: dict[int, int] = {}  # task -> attempts lost to the infrastructure
        self.sizes = list(self.resources.memory_sizes)
        self.step: dict[int, int] = {}  # task -> its memory size (index in sizes), when not 0
        self.before: dict[int, int] = {}  # task -> attempts retries counted at smaller sizes
        self.timed_out: set[int] = set()
        self.cancelled = False
        self.stopped_pending = False  # the failure budget is spent: start nothing new
        self.checked = 0.0  # when others' usage was last read and nothing fitted
        self.written = 0.0  # when state.json was last written
        self.data: HostData | None = None  # data this scheduler moves (DataRule "host")
        self.waiting: collections.deque = collections.deque()  # pending, inputs not yet there
        # a chained map (spmd.client.chain): each task waits for these tasks of the upstream job
        self.after_job = self.spec.after_job
        self.after_tasks = [set(w) for w in self.spec.after_tasks]
        self.upstream_ended: set[int] = set()
        self.upstream_read = 0.0

    # -- state --------------------------------------------------------------------

    def snapshot(self):
        return {i: (s.state, s.attempts) for i, s in self.tasks.items()}

    def write_state(self, done: bool = False) -> None:
        """state.json, atomically. Written many times a second while warm containers end
        tasks, so it is encoded compactly by json's C encoder (put_json indents, which takes
        the pure-Python one), and a TaskStatus (flat) is its fields' dict, not a deep copy."""
        self.written = time.monotonic()
        state = {
            "pid": os.getpid(),
            "done": done,
            "tasks": {str(i): vars(s) for i, s in self.tasks.items()},
            "infra_lost": {str(i): n for i, n in self.infra_lost.items()},
            "memory_step": {str(i): n for i, n in self.step.items()},
            "memory_before": {str(i): n for i, n in self.before.items()},
        }
        self.store.put(queue_key(self.job_id, "state.json"),
                       json.dumps(state, separators=(",", ":")).encode())

    def memory_of(self, task: int) -> int:
        """The memory of the task's next or current attempt."""
        return self.sizes[self.step.get(task, 0)]

    def resume(self, state: dict) -> None:
        """Take over from a scheduler that died, from its state.json and the runner's adopt()."""
        self.tasks = {int(k): TaskStatus(**v) for k, v in state.get("tasks", {}).items()}
        self.infra_lost = {int(k): n for k, n in state.get("infra_lost", {}).items()}
        self.step = {int(k): n for k, n in state.get("memory_step", {}).items()}
        self.before = {int(k): n for k, n in state.get("memory_before", {}).items()}
        self.pending.clear()
        running, pending = [], []
        for task, status in sorted(self.tasks.items()):
            if status.state == PENDING:
                pending.append((task, status.attempts + 1))
            elif status.state == RUNNING:
                running.append((task, status.attempts))
        adoption = self.runner.adopt([self.attempt(t, a) for t, a in running],
                                     [self.attempt(t, a) for t, a in pending])
        for task, attempt in running:
            self.running[task] = attempt
        for task, attempt in pending:
            if task in adoption.running or task in adoption.ended:
                self.running[task] = attempt  # started after the dead one last wrote its state
                self.tasks[task] = replace(self.tasks[task], state=RUNNING, attempts=attempt)
            else:
                self.pending.append((task, attempt))
        for task, outcome in adoption.ended.items():
            self.end(task, outcome)
        log.info("resumed: %d running, %d pending", len(self.running), len(self.pending))

    # -- the loop -----------------------------------------------------------------

    def run(self) -> None:
        """Run the job's tasks to their end, then finish it."""
        try:
            self.loop()
        except BaseException:
            self.close()
            raise
        self.finish()

    def loop(self) -> None:
        """Start, watch and end attempts until no task is pending, running or waiting."""
        self.write_state()
        written = self.snapshot()
        fetches = self.data is not None and self.data.fetches
        if fetches or self.after_job:
            self.waiting, self.pending = self.pending, collections.deque()
        if fetches:
            self.data.fetch_for([task for task, _ in self.waiting])
        while self.pending or self.running or self.waiting:
            if engine.STOPPING.is_set():
                raise SystemExit("the engine running this job was stopped")
            if not self.cancelled and self.cancel_asked():
                self.cancel_all()
            if not self.stopped_pending and self.store.exists(queue_key(self.job_id, "cancel_pending")):
                self.cancel_pending()
            if not self.cancelled:
                self.admit()
                self.start_what_fits()
            for task, outcome in self.runner.poll(TICK).items():
                self.end(task, outcome)
            self.time_out()
            if not self.pending and not self.waiting:
                self.runner.release_idle()
            now = self.snapshot()
            # A cancelled job's last states are written after runner.close() (finish), so a
            # client that sees every task ended finds none of the job's containers left.
            last = self.cancelled and not (self.pending or self.running or self.waiting)
            if now != written and not last and self.state_due():
                self.write_state()
                written = now

    def close(self) -> None:
        """Let the runner's resources go (local: the job's warm containers)."""
        try:
            self.runner.close()
        finally:
            if self.data is not None:
                self.data.close()

    def finish(self) -> None:
        """Every task has ended: let the resources and the secrets go, then say done."""
        self.close()
        self.remove_secrets()  # no task of the job will run again
        self.store.release_memory(layout.input_prefix(self.job_id))
        self.write_state(done=True)

    def state_due(self) -> bool:
        """Whether a changed state is written now: at most once per STATE_EVERY while tasks
        run (with warm workers tasks end many times a second, and the file holds every task),
        at once when none runs."""
        return time.monotonic() - self.written >= STATE_EVERY or not self.running

    def admit(self) -> None:
        """Move waiting tasks whose inputs are there (fetched, and their upstream tasks ended)
        to pending, in order; a task whose input cannot be fetched fails without starting."""
        if not self.waiting:
            return
        ended = self.read_upstream()
        still = collections.deque()
        for task, attempt in self.waiting:
            if ended is not None and task < len(self.after_tasks) \
                    and not self.after_tasks[task] <= ended:
                still.append((task, attempt))
                continue
            ready = True if self.data is None else self.data.ready(task)
            if ready is False:
                still.append((task, attempt))
            elif ready is True:
                self.pending.append((task, attempt))
            else:
                log.error("task %d: %s", task, ready)
                self.append_log(task, attempt, f"spmd: {ready}\n")
                self.tasks[task] = TaskStatus(FAILED, attempt - 1, None, ready, "error")
        self.waiting = still

    def read_upstream(self) -> set[int] | None:
        """The upstream job's ended tasks (None: not a chained map), read from its state.json
        at most every TICK."""
        if not self.after_job:
            return None
        if time.monotonic() - self.upstream_read >= TICK:
            self.upstream_read = time.monotonic()
            try:
                state = self.store.get_json(queue_key(self.after_job, "state.json"))
            except ObjectNotFound:
                state = {}
            self.upstream_ended = {int(t) for t, v in state.get("tasks", {}).items()
                                   if v.get("state") in TERMINAL or state.get("done")}
        return self.upstream_ended

    def cancel_asked(self) -> bool:
        return self.store.exists(queue_key(self.job_id, "cancel"))

    # -- starting -------------------------------------------------------------------

    def start_what_fits(self) -> None:
        if not self.pending:
            return
        self.start_on_idle()
        if not self.pending or not self.room():
            return
        cap = self.config["capacity"]
        cpu = self.resources.vcpus
        held = self.runner.held(len(self.running))
        held_mem = self.runner.held_memory(sum(self.memory_of(t) for t in self.running))
        if (held + 1) * cpu > cap["vcpus"] + 1e-9 \
                or held_mem + self.memory_of(self.pending[0][0]) > cap["memory"]:
            return  # the job holds all it may: no need to ask what the others hold
        if time.monotonic() - self.checked < TICK:
            return  # others' usage was read a moment ago and nothing fitted
        with self.capacity_lock():
            used_cpu, used_mem = self.runner.used_by_others()
            used_cpu += cpu * held
            used_mem += held_mem
            batch, room = [], self.room()
            while self.pending and len(batch) < room and used_cpu + cpu <= cap["vcpus"] + 1e-9 \
                    and used_mem + self.memory_of(self.pending[0][0]) <= cap["memory"]:
                batch.append(self.pending.popleft())
                used_cpu += cpu
                used_mem += self.memory_of(batch[-1][0])
            if batch:  # under the lock, so other jobs' schedulers count what starts
                self.launch(batch)
            else:
                self.checked = time.monotonic()

    @contextlib.contextmanager
    def capacity_lock(self) -> Iterator[None]:
        """Held while this scheduler reads the other jobs' usage and starts what fits beside it:
        the runner's lock file at the store's root, which every scheduler of its kind flocks."""
        with open(self.store.root / self.runner.lock_name, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def room(self) -> int:
        """How many more attempts may start under the map's max_parallel (any: no cap)."""
        cap = self.spec.max_parallel
        return len(self.pending) if not cap else max(0, cap - len(self.running))

    def start_on_idle(self) -> None:
        """Start pending attempts on warm slots the job holds idle, of their memory size."""
        room = self.room()
        if len(self.sizes) == 1:
            count = min(self.runner.idle(), len(self.pending), room)
            batch = [self.pending.popleft() for _ in range(count)]
        else:
            free = {m: self.runner.idle(m) for m in self.sizes}
            batch, waiting = [], collections.deque()
            while self.pending and any(free.values()) and len(batch) < room:
                task, attempt = self.pending.popleft()
                if free[self.memory_of(task)]:
                    free[self.memory_of(task)] -= 1
                    batch.append((task, attempt))
                else:
                    waiting.append((task, attempt))
            self.pending.extendleft(reversed(waiting))
        if batch:
            self.launch(batch)

    def launch(self, batch: list[tuple[int, int]]) -> None:
        for task, attempt in batch:
            self.running[task] = attempt
            # A retry keeps the reason the previous attempt failed, for the client's log.
            reason = self.tasks[task].reason if attempt > 1 else ""
            self.tasks[task] = TaskStatus(RUNNING, attempt, None, reason, started=time.time())
        for task, outcome in self.runner.start([self.attempt(t, a) for t, a in batch]).items():
            log.error("cannot start task %d: %s", task, outcome.reason)
            self.end(task, outcome)

    def attempt(self, task: int, number: int) -> Attempt:
        """One attempt as the runner gets it: its memory, and what it reads (spmd.protocol):
        earlier attempts that retries do not count (lost to infrastructure, or run at a
        smaller memory size), its memory."""
        memory = self.memory_of(task)
        return Attempt(task, number, memory, protocol.task_environment(
            self.spec.env, task, number, self.spec.image,
            self.infra_lost.get(task, 0) + self.before.get(task, 0), memory))

    # -- ending ---------------------------------------------------------------------

    def time_out(self) -> None:
        timeout = self.resources.timeout
        if not timeout:
            return
        now = time.monotonic()
        for task in self.running:
            started = self.runner.started_at(task)
            if task not in self.timed_out and started is not None and now - started > timeout:
                log.info("task %d timed out after %gs", task, timeout)
                self.timed_out.add(task)
                self.runner.kill(task)

    def end(self, task: int, outcome: Outcome) -> None:
        """Save the attempt's log and record how it ended, queueing a retry where one is due."""
        if task not in self.running:
            return  # not an attempt of this scheduler's (one a runner found but did not start)
        if not self.cancelled and self.cancel_asked():
            self.cancel_all()  # the client may have stopped the task itself, just now
        attempt = self.running.pop(task)
        timed_out = task in self.timed_out
        self.timed_out.discard(task)
        status = replace(self.judge(attempt, outcome, timed_out, self.memory_of(task)),
                         started=self.tasks[task].started, ended=time.time())
        text = outcome.log
        if timed_out or status.state == CANCELLED:
            text += f"spmd: the task was {'timed out' if timed_out else 'cancelled'} and killed\n"
        elif status.lost in ("oom", "infrastructure"):
            text += f"spmd: the task was stopped: {status.reason}\n"
        if self.data is not None and status.state in (SUCCEEDED, FAILED):
            failed = self.data.publish(task)
            if failed:
                text += f"spmd: {failed}\n"
                status = replace(status, state=FAILED, reason=failed, lost="error")
        self.append_log(task, attempt, text)
        self.settle(task, attempt, status)

    def judge(self, attempt: int, outcome: Outcome, timed_out: bool, memory: int) -> TaskStatus:
        code, res = outcome.exit_code, self.resources
        if timed_out:
            return TaskStatus(FAILED, attempt, code, f"timed out after {res.timeout:g}s", "timeout")
        if code == 0 and not outcome.lost:  # it finished before a cancel could stop it
            return TaskStatus(SUCCEEDED, attempt, 0)
        if self.cancelled:
            return TaskStatus(CANCELLED, attempt, code, "cancelled", "cancelled")
        if code == protocol.REQUEUE_EXIT and not outcome.lost:  # told to stop (spmd.task.checkpoint)
            return TaskStatus(FAILED, attempt, code, protocol.requeue_reason(outcome.log), "requeue")
        if outcome.oom:
            return TaskStatus(FAILED, attempt, code,
                              f"out of memory (limit {format_bytes(memory)})", "oom")
        if outcome.lost:
            return TaskStatus(FAILED, attempt, code, outcome.reason or outcome.lost, outcome.lost)
        if code is not None and code < 0:
            return TaskStatus(FAILED, attempt, code, f"killed by signal {-code}", "error")
        return TaskStatus(FAILED, attempt, code, outcome.reason or f"exited with code {code}", "error")

    def settle(self, task: int, attempt: int, status: TaskStatus) -> None:
        """Record the status, or queue the next attempt when spmd.attempts allows one."""
        if status.state == FAILED and not self.cancelled and not self.stopped_pending \
                and not self.cancel_asked():
            tally = Tally(self.infra_lost.get(task, 0), self.before.get(task, 0), self.step.get(task, 0))
            decision = attempts.after(self.resources, attempt, status.lost, tally)
            if decision.kind == "grow":
                log.info("task %d ran out of memory at %s; again with %s", task,
                         format_bytes(self.sizes[tally.step]), format_bytes(self.sizes[decision.tally.step]))
            elif decision.again and status.lost == "requeue":
                log.info("task %d %s; again, attempt %d", task, status.reason, attempt + 1)
            elif decision.again:
                log.info("task %d failed (%s); retrying, attempt %d", task, status.reason, attempt + 1)
            if decision.again:
                for record, value in ((self.infra_lost, decision.tally.infra_lost),
                                      (self.before, decision.tally.before),
                                      (self.step, decision.tally.step)):
                    if value:
                        record[task] = value
                self.pending.append((task, attempt + 1))
                status = replace(status, state=PENDING)
        self.tasks[task] = status

    def cancel_all(self) -> None:
        self.cancelled = True
        log.info("cancel asked: stopping %d running tasks, dropping %d pending",
                 len(self.running), len(self.pending))
        for task in self.running:
            self.runner.kill(task)
        self.drop_pending("cancelled before it started")

    def cancel_pending(self) -> None:
        """The failure budget is spent: running tasks finish, nothing else starts."""
        self.stopped_pending = True
        log.info("the failure budget is spent: dropping %d pending tasks, %d running go on",
                 len(self.pending) + len(self.waiting), len(self.running))
        self.drop_pending("not started: the job's failure budget is spent")

    def drop_pending(self, reason: str) -> None:
        while self.waiting:
            self.pending.append(self.waiting.popleft())
        while self.pending:
            task, attempt = self.pending.popleft()
            self.tasks[task] = TaskStatus(CANCELLED, attempt - 1, None, reason, "cancelled")

    def append_log(self, task: int, attempt: int, text: str) -> None:
        """Keep the task's log in the store, every attempt, so it outlives where it ran: its
        last log_limit bytes, appended to and cut without reading it whole (spmd.logcap)."""
        path = self.store.path(layout.log_key(self.job_id, task))
        header = f"--- spmd: attempt {attempt} ---\n" if attempt > 1 or path.exists() else ""
        path.parent.mkdir(parents=True, exist_ok=True)
        logcap.append(path, (header + text).encode(), self.config.get("log_limit") or logcap.DEFAULT_LIMIT)

    def remove_secrets(self) -> None:
        """Remove the job's secrets from the store's folder for them (``spmd.secrets``)."""
        secrets.remove(self.store, self.job_id)

    def fail_all(self, reason: str) -> None:
        """The scheduler itself failed: stop what runs and end every unfinished task."""
        try:
            for task in list(self.running):
                self.runner.kill(task)
            self.runner.close()
        except Exception:  # the runner may be what failed
            pass
        for task, status in self.tasks.items():
            if status.state in (PENDING, RUNNING):
                self.tasks[task] = TaskStatus(FAILED, status.attempts, None, reason, "error")
        self.store.release_memory(layout.input_prefix(self.job_id))
        self.write_state(done=True)


def _take(lock, tries: int = 40) -> bool:
    """Take the job's lock, held until this process ends. A client's scheduler_alive() holds
    it for an instant to probe it, so a busy lock is tried again for a while (2 s) before
    the job is left to the scheduler that holds it."""
    for _ in range(tries):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.05)
    return False


def take_job(root: str, job_id: str):
    """The job's lock, open and held (the process keeps it while it runs the job); None when
    another scheduler holds it, the job is done, or its folder is not there."""
    try:
        lock = open(os.open(DirectoryStore(root).path(queue_key(job_id, "scheduler.lock")),
                            os.O_WRONLY | os.O_CREAT, 0o600), "a")
    except OSError as exc:
        log.info("job %s in %s cannot be locked: %s", job_id, root, exc)
        return None
    if not _take(lock):
        log.info("another scheduler runs job %s; leaving it to that one", job_id)
        lock.close()
        return None
    try:
        state = DirectoryStore(root).get_json(queue_key(job_id, "state.json"))
    except (ObjectNotFound, ValueError):
        state = None
    if state and state.get("done"):
        lock.close()
        return None
    return lock


def run_job(root: str, job_id: str, lock, make_runner: Callable[[DirectoryStore, str, dict], Runner],
            kind: str, handed: bool = False) -> int:
    """Run (or resume) a job whose lock this process holds; the lock is let go at the end.
    ``handed``: run by the engine (spmd.scheduling.engine) in a thread ``job-<id>``, so the
    job's lines of the engine's log also go to the job's scheduler.log, where a process
    started for the job alone writes them."""
    store = DirectoryStore(root)
    handler = None
    if handed:
        log_file = open(os.open(store.path(queue_key(job_id, "scheduler.log")),
                                os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        thread = f"job-{job_id}"  # the job's thread, and its runner's and fetcher's pools
        handler.addFilter(lambda record: record.threadName == thread
                          or record.threadName.startswith(thread + "-"))
        logging.getLogger().addHandler(handler)
        log.info("job %s run by the engine (pid %d)", job_id, os.getpid())
    try:
        try:
            state = store.get_json(queue_key(job_id, "state.json"))
        except ObjectNotFound:
            state = None
        config = store.get_json(queue_key(job_id, "spec.json"))
        scheduler = Scheduler(store, job_id, config, None)
    except BaseException:
        log.error("scheduler failed at its start: %s", traceback.format_exc())
        _let_go(lock, handler)
        return 1
    try:
        scheduler.runner = make_runner(store, job_id, config)
        scheduler.data = HostData.of(store, job_id)
        if state:
            scheduler.resume(state)
        scheduler.run()
    except BaseException as exc:
        log.error("scheduler failed: %s", traceback.format_exc())
        scheduler.fail_all(f"the {kind} scheduler failed: {type(exc).__name__}: {exc}")
        _let_go(lock, handler)
        return 1
    _let_go(lock, handler)
    return 0


def _let_go(lock, handler) -> None:
    if lock is not None:
        lock.close()
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()


def main(argv: list[str], make_runner: Callable[[DirectoryStore, str, dict], Runner],
         kind: str) -> int:
    """``python -m <backend's scheduler> ROOT JOB``: run (or resume) the job's scheduler, as
    the engine that takes other jobs too when none listens yet (spmd.scheduling.engine)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    root, job_id = argv

    def stop(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    lock = take_job(root, job_id)
    if lock is None:
        return 0
    module = getattr(sys.modules["__main__"].__spec__, "name", "")
    return engine.serve(module, (root, job_id, lock),
                        lambda r, j, held, handed: run_job(r, j, held, make_runner, kind, handed),
                        take_job)
