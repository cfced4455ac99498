"""ProcessQueue: the client's side of the process scheduler, spmd's shared SchedulerQueue.

The files it keeps in the store are the core's (``spmd.scheduling.client``). A scheduler
that died is not replaced: its children ran in sessions of their own and may still run, so
its unfinished tasks are reported FAILED, naming the scheduler's log.
"""
from __future__ import annotations

import os
import sys

from spmd.batch_queue import ArraySpec
from spmd.scheduling import SchedulerQueue


class ProcessQueue(SchedulerQueue):
    """Runs each array with a detached ``python -m spmd_process.scheduler`` process."""

    scheduler_module = "spmd_process.scheduler"
    kind = "process"
    resume_dead_scheduler = False

    def __init__(self, store, capacity, log_limit: int | None = None):
        super().__init__(store, capacity)
        self.log_limit = log_limit

    def extra_config(self, spec: ArraySpec) -> dict:
        return {"python": sys.executable, "log_limit": self.log_limit}


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
