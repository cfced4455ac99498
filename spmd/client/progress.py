"""A progress bar for ``Job.wait()`` and ``Job.results()``: tasks done, failed and running.

    Job.wait(progress=None) ──> enabled()? ──no──> plain wait
                                   └─yes─> tqdm.auto bar, updated from the watcher's last
                                           view of the queue; on the end, from job.status()

On by default in a terminal or a notebook; off when ``CI`` is set, when stderr is not a
terminal, or with ``progress=False``. ``tqdm.auto`` picks the notebook widget in Jupyter.
The last counts shown are those of ``job.status()``, read once when the job has ended.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Mapping, Protocol

from ..batch_queue import CANCELLED, FAILED, PENDING, RUNNING, STATES, SUCCEEDED, TaskStatus
from ..layout import Manifest


class Job(Protocol):
    """What the bar reads of a job (spmd.client.job.Job): its manifest, the watcher's last states,
    its status and its plain wait."""

    manifest: Manifest
    _states: Mapping[int, TaskStatus]

    def status(self) -> dict[str, int]: ...

    def _wait_plain(self, timeout: float | None) -> bool: ...


#: seconds between refreshes of the bar (the watcher polls the queue on its own interval)
REFRESH = 0.5


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where stderr is not a terminal but a bar renders)."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def enabled(progress: bool | None) -> bool:
    """An explicit True/False wins; otherwise on in a terminal or a notebook, never under CI."""
    if progress is not None:
        return bool(progress)
    if os.environ.get("CI"):
        return False
    return in_notebook() or sys.stderr.isatty()


def counts_of(states: Mapping[int, TaskStatus], n_tasks: int) -> dict[str, int]:
    """Task counts per state, as ``Job.status()`` gives them."""
    counts = Counter(states.get(t, TaskStatus()).state for t in range(n_tasks))
    return {state: counts.get(state, 0) for state in STATES}


def describe(counts: Mapping[str, int]) -> str:
    """``done=3 failed=1 running=2`` (and ``cancelled=N`` when some were)."""
    text = (f"done={counts.get(SUCCEEDED, 0)} failed={counts.get(FAILED, 0)} "
            f"running={counts.get(RUNNING, 0)}")
    if counts.get(CANCELLED):
        text += f" cancelled={counts[CANCELLED]}"
    return text


class Bar:
    """A tqdm bar over a job's tasks; ``show(counts)`` moves it."""

    def __init__(self, job: "Job", file=None):
        from tqdm.auto import tqdm
        self._bar = tqdm(total=job.manifest.n_tasks, desc=job.manifest.name, unit="task", file=file,
                         leave=True, dynamic_ncols=True)

    def show(self, counts: Mapping[str, int]) -> None:
        self._bar.n = sum(n for state, n in counts.items() if state not in (PENDING, RUNNING))
        self._bar.set_postfix_str(describe(counts), refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def wait(job: "Job", timeout: float | None = None, file=None) -> bool:
    """``job.wait(timeout)`` with a bar; True when every item is done and its task ended."""
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = Bar(job, file=file)
    try:
        while True:
            remaining = REFRESH if deadline is None else max(0.0, min(REFRESH, deadline - time.monotonic()))
            if job._wait_plain(remaining):
                bar.show(job.status())
                return True
            bar.show(counts_of(job._states, job.manifest.n_tasks))
            if deadline is not None and time.monotonic() >= deadline:
                return False
    finally:
        bar.close()
