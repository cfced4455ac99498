"""Runner: what a backend that schedules on this machine supplies to the scheduler core.

The core decides which task runs when, retries, times out, cancels and records; a runner
only knows how to run one task attempt somewhere (a container, a process) and how it ended.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple


@dataclass(frozen=True)
class Attempt:
    """One attempt the core asks a runner to run: which task, its number (from 1), its memory
    limit in bytes (it grows after an attempt killed for its memory) and the environment the
    task reads (spmd.protocol's variables and the Knot's env)."""

    task: int
    number: int
    memory: int
    env: Mapping[str, str]


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, as its runner saw it.

    ``exit_code`` is the task process's code (negative: killed by that signal; None: unknown);
    ``oom`` says it was killed for its memory; ``lost`` overrides the core's judgement when the
    runner knows better ("infrastructure": the engine or the container went away under it);
    ``log`` is everything the attempt printed.
    """

    exit_code: int | None
    log: str = ""
    oom: bool = False
    lost: str | None = None
    reason: str = ""


class Adoption(NamedTuple):
    """What a runner found of a dead scheduler's attempts: the Outcome of each running one
    it cannot find or that has ended, and the ``maybe`` tasks it found running."""

    ended: dict[int, Outcome]
    running: set[int]


class Runner(ABC):
    """Launch, poll, kill and count the attempts of one job's tasks (one runner per scheduler)."""

    #: a file all schedulers of one kind lock while they check and claim capacity
    lock_name = ".scheduler.lock"

    @abstractmethod
    def start(self, attempts: list[Attempt]) -> dict[int, Outcome]:
        """Begin these attempts; returns the Outcome of each that could not start, by task.

        Called under the capacity lock: a runner makes what it starts visible to other
        schedulers (labels, a usage file) before it returns.
        """

    @abstractmethod
    def poll(self, timeout: float) -> dict[int, Outcome]:
        """Wait up to ``timeout`` seconds for attempts to end; returns those that ended, by task."""

    @abstractmethod
    def started_at(self, task: int) -> float | None:
        """When the task's attempt began to run (``time.monotonic()``), None while it is starting."""

    @abstractmethod
    def kill(self, task: int) -> None:
        """Stop the task's running attempt at once (its Outcome still comes through ``poll``)."""

    @abstractmethod
    def used_by_others(self) -> tuple[float, int]:
        """vCPUs and memory held by the other jobs of this kind on this machine."""

    def idle(self, memory: int | None = None) -> int:
        """How many more tasks this job can start on capacity it already holds (warm slots),
        of that memory limit (None: any)."""
        return 0

    def held(self, running: int) -> int:
        """How many tasks' worth of capacity this job holds, with ``running`` tasks running."""
        return running

    def held_memory(self, running: int) -> int:
        """The memory this job holds, its running attempts holding ``running`` bytes."""
        return running

    def release_idle(self) -> None:
        """The job has nothing left to start (retries aside): let capacity it holds idle go,
        so another job (the next step of a study) can start now."""

    def adopt(self, running: Iterable[Attempt], maybe: Iterable[Attempt] = ()) -> Adoption:
        """After a scheduler died: take over its ``running`` attempts (as start() got them).
        ``maybe`` are the next attempts of tasks its last state.json calls pending, which it
        may have started (or even ended) after writing that file: take over those found.
        By default nothing can be found: every running attempt is lost to the infrastructure."""
        return Adoption({a.task: Outcome(None, lost="infrastructure",
                                         reason="its attempt was lost with the scheduler")
                         for a in running}, set())

    def close(self) -> None:
        """The job has ended (or the scheduler is failing): release what the runner holds."""
