"""BatchQueue: run an array of N tasks of one image/command/resources and report on each.

States are the same on every backend: PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED.
A queue reports *why* a task failed in ``TaskStatus.lost``, which the job turns into the
matching TaskLost subclass when the task left no output:

    "oom"             killed for exceeding its memory limit
    "timeout"         killed for exceeding its timeout (never retried)
    "cancelled"       stopped by cancel
    "error"           the task's process failed (user code, non-zero exit): ``retries`` applies
    "infrastructure"  lost to the infrastructure, not to the user's code (engine restart,
                      host or spot instance lost, image not pulled or started): retried
                      under ``Resources.infra_retries``, a budget of its own
    "requeue"         told to stop from outside (a time limit's warning, preemption, a
                      stopped container), its spmd.checkpoint_dir() saved: run again under
                      ``infra_retries`` too
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Mapping

PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


@dataclass(frozen=True)
class Resources:
    """What one task may use. ``timeout`` is seconds per attempt; ``retries`` extra attempts
    after errors in the user's code; ``infra_retries`` extra attempts after losses to the
    infrastructure (engine restart, host lost), counted separately."""

    vcpus: float = 1.0
    memory: int = 2 * 2**30
    timeout: float | None = None
    retries: int = 0
    infra_retries: int = 3
    #: larger sizes, ascending: an attempt killed for its memory runs again at the next one
    more_memory: tuple[int, ...] = ()
    gpus: int = 0  # GPUs each task gets

    @property
    def memory_sizes(self) -> tuple[int, ...]:
        """Every memory size an attempt may get, first to last."""
        return (self.memory, *self.more_memory)

    def memory_at(self, step: int) -> int:
        """The memory of an attempt at ``step`` of ``memory_sizes`` (0: the first size)."""
        return self.memory_sizes[min(step, len(self.more_memory))]

    @classmethod
    def from_dict(cls, raw: dict) -> "Resources":
        """From ``dataclasses.asdict`` output read back from JSON (lists become tuples)."""
        return cls(**{**raw, "more_memory": tuple(raw.get("more_memory") or ())})


@dataclass(frozen=True)
class ArraySpec:
    """One array of tasks: everything a queue needs to run them."""

    job_id: str
    image: str
    command: tuple[str, ...]
    n_tasks: int
    resources: Resources
    env: Mapping[str, str] = field(default_factory=dict)
    network: bool = False  # tasks need a network (the local backend gives none otherwise)
    max_parallel: int | None = None  # at most this many tasks of the array run at once
    #: a chained map (spmd.client.chain): the upstream job's id and queue handle, and for each task
    #: the upstream tasks that must have ended before it starts
    after_job: str = ""
    after_handle: str = ""
    after_tasks: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def from_dict(cls, raw: Mapping) -> "ArraySpec":
        """From ``dataclasses.asdict`` output read back from JSON (a queue's spec.json)."""
        return cls(**{**raw, "resources": Resources.from_dict(raw["resources"]),
                      "command": tuple(raw["command"]), "env": dict(raw.get("env") or {}),
                      "after_tasks": tuple(tuple(t) for t in raw.get("after_tasks") or ())})


@dataclass(frozen=True)
class TaskStatus:
    """One task's state, with the reason it ended when it did not succeed."""

    state: str = PENDING
    attempts: int = 0
    exit_code: int | None = None
    reason: str = ""
    lost: str | None = None  # "oom", "timeout", "cancelled", "error", "infrastructure", "requeue"
    started: float | None = None  # epoch seconds the last attempt started, when the queue knows
    ended: float | None = None    # and ended (for the run report, lost tasks included)


class BatchQueue(ABC):
    """Runs arrays of tasks; the handle it returns is stored with the job for re-attaching."""

    #: runs an attempt killed for its memory again at ``Resources.more_memory``'s next size
    #: (a queue without it refuses such a spec on the client, before anything is submitted)
    grows_memory: bool = False
    #: keeps ``ArraySpec.max_parallel`` (a queue without it refuses such a spec on the client)
    caps_parallel: bool = False
    #: passes a Knot's secrets to its tasks (``deliver_secrets``); map() refuses them otherwise
    takes_secrets: bool = False

    @abstractmethod
    def submit(self, spec: ArraySpec) -> str:
        """Start the array; returns a handle (a string) that finds it again from any process."""

    @abstractmethod
    def states(self, handle: str) -> Mapping[int, TaskStatus]:
        """Every task's status, by task index (a task not yet known is PENDING)."""

    @abstractmethod
    def cancel(self, handle: str) -> None:
        """Stop running tasks and never start pending ones."""

    def deliver_secrets(self, job_id: str, secrets: tuple) -> dict[str, str]:
        """Put a job's secrets (spmd.secrets.Secret) where only its tasks can read them, before
        it is submitted; returns what to add to the tasks' environment (never a value)."""
        raise NotImplementedError(f"{type(self).__name__} cannot pass secrets to tasks")

    def cancel_pending(self, handle: str) -> None:
        """Never start the tasks that have not started (nor any retry); running ones go on.
        The failure budget uses it. This default cancels everything: override it where the
        queue can tell pending tasks apart."""
        self.cancel(handle)

    def advance(self, handle: str, states: Mapping[int, TaskStatus]) -> None:
        """Act for the job on the states just read, as only the client watching it does
        (``spmd.Job``'s poll): e.g. AWS submits a task killed for memory again, larger.
        ``states()`` itself stays read-only, so ``spmd status`` and reports never submit.
        By default nothing."""

    @abstractmethod
    def logs(self, handle: str, task: int) -> str:
        """The log text of a task that has ended (all attempts); '' if there is none."""

    def log_part(self, handle: str, task: int, start: int) -> tuple[bytes, int]:
        """(the task's log from byte start, negative: that many from its end; the log's length).
        Tails and ``spmd logs -f`` use it; a backend whose logs are files reads only that part."""
        data = self.logs(handle, task).encode()
        return data[max(0, len(data) + start) if start < 0 else start:], len(data)
