"""The scheduler core for backends that run tasks on this machine (local Docker, processes).

    store.py   DirectoryStore: a directory as an object store (atomic puts)
    core.py    Scheduler: task states, retries (user and infrastructure budgets), timeouts,
               cancel, state.json, task logs, the job's lock and resume
    runner.py  Runner: what a backend supplies (start / poll / kill / usage)
    client.py  SchedulerQueue: the BatchQueue a client uses (submit, states, cancel, logs)
"""
from .client import SchedulerQueue
from .core import Scheduler, main as scheduler_main, queue_key
from .runner import Adoption, Attempt, Outcome, Runner
from ..stores.directory import DirectoryStore

__all__ = ["Adoption", "Attempt", "DirectoryStore", "Outcome", "Runner", "Scheduler", "SchedulerQueue", "queue_key",
           "scheduler_main"]
