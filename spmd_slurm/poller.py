"""One ``squeue`` for every array this client watches, asked less often while nothing changes.

    Job A states() ─┐                        ┌─ asked within the interval: the last answer
    Job B states() ─┼─> Poller.tasks(ids) ───┤
    Job C states() ─┘                        └─ due, new arrays, or a task's marks changed:
                                                ONE squeue --jobs=<every watched array>

The interval starts at the poll interval and grows by half each time squeue's answer is the
same as before, up to ``LONGEST`` times the poll interval (30 s at the default of 1 s): a
job of long tasks costs the controller a call every half minute, whatever its size. Any
change (a task started, ended, was requeued) brings it back to the poll interval. A task's
end shows first in the marks its script leaves on the shared store, which cost Slurm nothing
and are read on every poll; the queue then asks at once.
"""
from __future__ import annotations

import math
import os
import threading
import time
from typing import Callable

GROWTH = 1.5
LONGEST = 30  # times the poll interval


def now() -> float:
    return time.monotonic()


class Poller:
    """The squeue answers of one client (one per cluster and poll interval, in ``shared``)."""

    def __init__(self, first: float, ask: Callable[[list[str]], dict],
                 clock: Callable[[], float] | None = None):
        self.first = first
        self.interval = first
        self.ask = ask
        self.clock = clock
        self.watched: set[str] = set()
        self.answer: dict = {}
        self.by_array: dict[str, dict] = {}  # the answer, by array
        self.ended: dict[str, dict] = {}  # the last answer about arrays whose tasks all ended
        self.gone: set[str] = set()  # those arrays
        self.included: set[str] = set()  # arrays some squeue asked about
        self.asked = -math.inf
        self.calls = 0
        self.lock = threading.Lock()

    def watch(self, ids: list[str]) -> None:
        """Arrays just submitted: the next squeue asks about them too."""
        with self.lock:
            self.watched.update(ids)

    def tasks(self, ids: list[str], fresh: bool = False) -> dict:
        """squeue's answer for these arrays' tasks, asked when due or when any of ids was
        never asked about; ``fresh`` (the caller saw a change) makes it due a poll interval
        after the last ask, however long the interval had grown."""
        with self.lock:  # the jobs' watchers poll from their own threads
            new = not self.included.issuperset(ids)
            self.watched.update(i for i in ids if i not in self.gone)
            if fresh:
                self.interval = self.first
            clock = (self.clock or now)()
            if new or clock - self.asked >= self.interval:
                answer = self.ask(sorted(self.watched))
                self.included.update(self.watched)
                self.calls += 1
                self.interval = min(self.interval * GROWTH, self.first * LONGEST) \
                    if answer == self.answer else self.first
                self.answer, self.asked = answer, (self.clock or now)()
                self.by_array = _by_array(answer)
            found: dict = {}
            for array in ids:
                found.update(self.ended.get(array) or self.by_array.get(array) or {})
            return found

    def forget(self, ids: list[str]) -> None:
        """Stop asking about arrays whose tasks all ended; their last answer is kept."""
        gone = set(ids)
        with self.lock:
            self.ended.update({a: self.by_array[a] for a in gone if a in self.by_array})
            self.gone.update(gone)
            self.watched.difference_update(gone)


def _by_array(answer: dict) -> dict[str, dict]:
    grouped: dict[str, dict] = {}
    for key, task in answer.items():
        grouped.setdefault(key[0], {})[key] = task
    return grouped


_SHARED: dict[tuple, Poller] = {}


def shared(first: float, ask: Callable[[list[str]], dict]) -> Poller:
    """The process's poller for this cluster (SLURM_CONF) and poll interval."""
    key = (os.environ.get("SLURM_CONF", ""), first, ask)
    if key not in _SHARED:
        _SHARED[key] = Poller(first, ask)
    return _SHARED[key]
