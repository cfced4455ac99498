"""The task protocol: what a task reads, what it writes, and how the client turns that into futures.

    queue ──env──> task:  AWS_BATCH_JOB_ARRAY_INDEX (+ SPMD_TASK_OFFSET) = task index
                          SPMD_ATTEMPT (or AWS_BATCH_JOB_ATTEMPT) = attempt, from 1
                          SPMD_INFRA_LOST = earlier attempts that retries do not count
                          SPMD_MEMORY = this attempt's memory limit in bytes
                          SPMD_STORE_URL, SPMD_JOB_ID, SPMD_IMAGE
    task ──store──> client:  output/<task>.pkl, a TaskOutput frame (results per call,
                             attempt, final, provenance), written atomically
    task ──exit──> queue:    0 every call succeeded, 1 one raised, REQUEUE_EXIT (75) told to
                             stop, its checkpoint saved (spmd.task.checkpoint): run it again
    client:  resolve(outputs read, queue states, already resolved) ──> Resolutions

``resolve`` is the one place that decides how a task's futures end; ``spmd.client.job.Job``'s
watcher only gathers its inputs (one listing, one states call, the new outputs) and
applies what it returns. It is a pure function, unit-tested table by table.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Optional, Sequence

from . import codec, integrity, layout
from .batch_queue import CANCELLED, RUNNING, TERMINAL, TaskStatus
from .errors import ObjectNotFound, ResultDamaged, StoreError, TaskLost, TaskOutOfMemory, TaskTimedOut
from .stores.object_store import ObjectStore

# -- what a task reads ----------------------------------------------------------------------

ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"  # AWS Batch sets it in an array's child; so do others
TASK_OFFSET = "SPMD_TASK_OFFSET"           # added to the index when a map spans several arrays
ATTEMPT = "SPMD_ATTEMPT"                   # 1, 2, ...; also what the user's code may read
BATCH_ATTEMPT = "AWS_BATCH_JOB_ATTEMPT"    # AWS Batch's own attempt number, preferred if set
STORE_URL = "SPMD_STORE_URL"
JOB_ID = "SPMD_JOB_ID"
IMAGE = "SPMD_IMAGE"
INFRA_LOST = "SPMD_INFRA_LOST"             # earlier attempts retries do not count: lost to
#                                            infrastructure, or run at a smaller memory size
ATTEMPT_OFFSET = "SPMD_ATTEMPT_OFFSET"     # attempts of the task in earlier submissions (a
#                                            queue that resubmits it, e.g. with more memory)
MEMORY = "SPMD_MEMORY"                     # this attempt's memory limit, bytes
SINGLE_TASK = "SPMD_SINGLE_TASK"           # a Batch job of one task (no array index)
SECRETS_DIR = "SPMD_SECRETS_DIR"           # the folder of the task's secrets (spmd.secrets)
STAGE_DIR = "SPMD_STAGE_DIR"               # a warm container's folder for this task's staging
PRELOAD = "SPMD_PRELOAD"                   # "0": a warm container imports nothing ahead

#: a task's exit code after it was told to stop and saved its checkpoint (spmd.task.checkpoint):
#: the queue runs it again under infra_retries (BSD's EX_TEMPFAIL, "try again later")
REQUEUE_EXIT = 75
REQUEUED = "spmd: requeued"  # how the log line saying why and what was saved begins


def requeue_reason(log: str) -> str:
    """Why an attempt that exited REQUEUE_EXIT stopped, and what it saved, from its log's
    last ``spmd: requeued (...)`` line."""
    for line in reversed(log.splitlines()):
        if line.startswith(REQUEUED):
            return line[len("spmd: "):].strip()
    return "requeued"

#: variables that belong to one task and must not leak from a parent into another task
PER_TASK = (ARRAY_INDEX, TASK_OFFSET, ATTEMPT, BATCH_ATTEMPT, INFRA_LOST, ATTEMPT_OFFSET, MEMORY,
            SINGLE_TASK)


def clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """environ without the variables of another task (PER_TASK): what a queue that starts a
    task from its own environment passes on."""
    return {k: v for k, v in environ.items() if k not in PER_TASK}


def task_index(environ: Mapping[str, str] = os.environ) -> int:
    """The task's index in the whole map."""
    return int(environ[ARRAY_INDEX]) + int(environ.get(TASK_OFFSET, "0"))


def attempt_number(environ: Mapping[str, str] = os.environ) -> int:
    """The attempt this is, from 1 (a resubmitted task's earlier attempts included)."""
    offset = int(environ.get(ATTEMPT_OFFSET) or 0)
    if environ.get(BATCH_ATTEMPT):
        return int(environ[BATCH_ATTEMPT]) + offset
    return int(environ.get(ATTEMPT) or 1)  # queues that set it count every attempt


def infra_lost(environ: Mapping[str, str] = os.environ) -> int:
    """How many earlier attempts do not count against ``retries`` (lost to infrastructure,
    or run at a smaller memory size), so the worker's ``final`` flag leaves them out."""
    return int(environ.get(INFRA_LOST) or 0)


def task_environment(env: Mapping[str, str], task: int, attempt: int, image: str = "",
                     lost_to_infrastructure: int = 0, memory: int | None = None) -> dict:
    """env (the ArraySpec's) plus what one attempt of one task reads: for a queue that
    starts tasks itself. ``lost_to_infrastructure``: earlier attempts retries do not count."""
    out = {**env, ARRAY_INDEX: str(task), ATTEMPT: str(attempt), IMAGE: image,
           INFRA_LOST: str(lost_to_infrastructure)}
    if memory is not None:
        out[MEMORY] = str(memory)
    return out


# -- what a task writes -----------------------------------------------------------------------

OK, ERROR = "ok", "error"
#: one call's outcome: ("ok", codec.Pickled value) or ("error", codec.capture_exception record)
CallResult = tuple[Literal["ok", "error"], Any]


@dataclass(frozen=True)
class Provenance:
    """Where and when an attempt ran."""

    started: float
    ended: float
    attempt: int
    peak_memory: int
    host: str
    image: str
    python: str


@dataclass(frozen=True)
class TaskOutput:
    """What one attempt of a task leaves in the store: one result per call, in call order.

    ``final`` is true when no retry will follow: every call succeeded, or this was the last
    attempt the retry budget allows.
    """

    task: int
    attempt: int
    final: bool
    results: list[CallResult]
    provenance: Provenance

    @property
    def ok(self) -> bool:
        return all(kind == OK for kind, _ in self.results)


def write_output(store: ObjectStore, job_id: str, output: TaskOutput) -> None:
    """Put output where the client looks for it, atomically, its buffers written as they are."""
    store.put_parts(layout.output_key(job_id, output.task), codec.dumps_frame(output))


def read_output(store: ObjectStore, job_id: str, task: int) -> TaskOutput | None:
    """The latest output of task, or None when it has written none; ResultDamaged when it is
    there but cannot be decoded (outputs are written atomically, so it will not heal)."""
    key = layout.output_key(job_id, task)
    try:
        view = store.get_view(key)
    except ObjectNotFound:
        return None
    try:  # signed by the job's scheduler where it signs (spmd.integrity): else never unpickled
        signed = integrity.verify(store, job_id, key, view)
    except integrity.Unsigned:
        return None  # its attempt has not ended yet
    except StoreError as exc:  # the job's key cannot be read: nothing is unpickled unverified
        raise ResultDamaged(key, str(exc), job_id=job_id, task=task) from exc
    if not signed:
        raise ResultDamaged(key, "it changed after its task ended (its signature differs)",
                            job_id=job_id, task=task)
    try:
        output = codec.loads_frame(view)
    except Exception as exc:  # truncated, overwritten: pickle, struct or frame errors
        raise ResultDamaged(key, f"{type(exc).__name__}: {exc}", job_id=job_id, task=task) from exc
    if not isinstance(output, TaskOutput):
        raise ResultDamaged(key, f"it holds a {type(output).__name__}, not a task's output",
                            job_id=job_id, task=task)
    return output


# -- how the client turns outputs and queue states into futures ---------------------------------

#: which TaskLost a task that ended without output raises, by TaskStatus.lost
LOST_ERRORS: dict[Optional[str], type[TaskLost]] = {
    "oom": TaskOutOfMemory,
    "timeout": TaskTimedOut,
    "infrastructure": TaskLost,
    "requeue": TaskLost,
    "error": TaskLost,
    None: TaskLost,
}


@dataclass(frozen=True)
class Resolution:
    """How one task's futures end.

    kind ``"output"``: each future gets its call's value or remote error from ``output``;
    ``"lost"``: every future gets ``error`` (a TaskLost class) with ``reason``;
    ``"cancelled"``: every future is cancelled.
    """

    task: int
    kind: Literal["output", "lost", "cancelled"]
    output: TaskOutput | None = None
    error: type[TaskLost] | None = None
    reason: str = ""
    exit_code: int | None = None

    def lost_error(self, job_id: str, log_tail: str = "") -> TaskLost:
        """The exception of a lost task, carrying the tail of its log."""
        assert self.error is not None, f"task {self.task} was not lost but {self.kind}"
        return self.error(self.reason, job_id=job_id, task=self.task, log_tail=log_tail,
                          exit_code=self.exit_code)


@dataclass(frozen=True)
class Step:
    """What one look at a job decided: tasks to resolve, and unresolved tasks now running."""

    resolutions: list[Resolution] = field(default_factory=list)
    running: list[int] = field(default_factory=list)


def resolve(tasks: Iterable[int], outputs: Mapping[int, TaskOutput | None],
            states: Mapping[int, TaskStatus], resolved: Iterable[int] = (),
            wait_for_queue: bool = False) -> Step:
    """Decide which tasks' futures end now, and how. Pure: reads only its arguments.

    tasks     every task of the job
    outputs   the latest output read of each task (missing or None: it wrote none)
    states    the queue's status of each task (missing: PENDING)
    resolved  tasks already resolved, left alone
    wait_for_queue  an output resolves only once the queue says its task ended (the host
              publishes the task's output files before it says so)

    An output resolves its task when it is final or when the queue says the task ended
    (a non-final output while a retry is due waits for that retry). A task that ended
    without output is lost (TaskOutOfMemory, TaskTimedOut or TaskLost by ``status.lost``,
    "infrastructure" included) or cancelled.
    """
    done = set(resolved)
    step = Step()
    for task in tasks:
        if task in done:
            continue
        status = states.get(task, TaskStatus())
        output = outputs.get(task)
        ended = status.state in TERMINAL
        if output is not None and ((output.final and not wait_for_queue) or ended):
            step.resolutions.append(Resolution(task, "output", output))
        elif output is None and ended:
            if status.state == CANCELLED or status.lost == "cancelled":
                step.resolutions.append(Resolution(task, "cancelled", reason=status.reason))
            else:
                step.resolutions.append(Resolution(
                    task, "lost", error=LOST_ERRORS.get(status.lost, TaskLost),
                    reason=status.reason or "ended without output", exit_code=status.exit_code))
        elif status.state == RUNNING:
            step.running.append(task)
    return step


def outputs_to_read(tasks: Iterable[int], listed: Iterable[int], states: Mapping[int, TaskStatus],
                    read_at: Mapping[int, int], resolved: Iterable[int] = ()) -> list[int]:
    """Which unresolved tasks' outputs to read now, so that ``resolve`` sees the latest.

    listed   tasks whose output the store listed; read_at: for a task whose output was read
    and not final, the queue's attempt count then. Such an output is read again only when
    the queue reports another attempt, or the end (a task that ended is always read once).
    """
    listed, done = set(listed), set(resolved)
    wanted = []
    for task in tasks:
        if task in done:
            continue
        status = states.get(task, TaskStatus())
        if status.state in TERMINAL or (task in listed and read_at.get(task) != status.attempts):
            wanted.append(task)
    return wanted


def listing_start(job_id: str, tasks: Sequence[int], resolved: Iterable[int]) -> str:
    """The ``start_after`` for listing outputs: just before the first unresolved task's key.

    Tasks start in index order, so outputs mostly appear in that order and each poll lists
    only the outputs of the unresolved window, not every output written so far.
    """
    done = set(resolved)
    first = next((t for t in tasks if t not in done), None)
    if first is None or first == 0:
        return ""
    return layout.output_key(job_id, first - 1)
