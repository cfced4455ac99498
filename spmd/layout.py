"""Where a job's pieces live in the store, and its manifest.

    jobs/<job-id>/manifest.json        what the job is (this module's Manifest)
    jobs/<job-id>/queue.json           the queue's handle, written after submit
    jobs/<job-id>/function.pkl         the cloudpickled function
    jobs/<job-id>/input/<shard>.bin    task payloads, packed by spmd.shards
    jobs/<job-id>/output/<task>.pkl    one per task, written atomically by the worker
    jobs/<job-id>/logs/<task>.log      a task's log, where the queue keeps logs in the store
    jobs/<job-id>/checkpoints/<task>.tar  a task's checkpoint_dir(), saved when it was told to
                                       stop (spmd.task.checkpoint); deleted once the task succeeds
    jobs/<job-id>/queue/...            queue-private state (local scheduler, AWS memory steps)
    jobs/<job-id>/reused.pkl           results a ``reuse=True`` map took from earlier jobs
    cache/<reuse key>/<job-id>.json    a ``reuse=True`` job's item keys (spmd.reuse)
"""
from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Sequence

from .batch_queue import Resources

JOBS = "jobs/"


def new_job_id(name: str) -> str:
    """A readable, unique, sortable id: ``<name>-<utc time>-<random>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "job"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def prefix(job_id: str) -> str:
    return f"{JOBS}{job_id}/"


def manifest_key(job_id: str) -> str:
    return f"{prefix(job_id)}manifest.json"


def queue_key(job_id: str) -> str:
    return f"{prefix(job_id)}queue.json"


def function_key(job_id: str) -> str:
    return f"{prefix(job_id)}function.pkl"


def input_prefix(job_id: str) -> str:
    """Where a job's input shards are: needed only while its tasks run."""
    return f"{prefix(job_id)}input/"


def shard_key(job_id: str, shard: int) -> str:
    return f"{input_prefix(job_id)}{shard:05d}.bin"


def output_prefix(job_id: str) -> str:
    return f"{prefix(job_id)}output/"


def output_key(job_id: str, task: int) -> str:
    return f"{output_prefix(job_id)}{task:06d}.pkl"


def task_of_output_key(key: str) -> int:
    return int(key.rsplit("/", 1)[1].split(".", 1)[0])


def data_key(job_id: str) -> str:
    """The job's data where it lives: its URL inputs with versions, and destinations."""
    return f"{prefix(job_id)}data.json"


def log_key(job_id: str, task: int) -> str:
    return f"{prefix(job_id)}logs/{task:06d}.log"


def checkpoint_key(job_id: str, task: int) -> str:
    return f"{prefix(job_id)}checkpoints/{task:06d}.tar"


def reused_key(job_id: str) -> str:
    return f"{prefix(job_id)}reused.pkl"


CACHE = "cache/"


def cache_prefix(reuse_key: str) -> str:
    return f"{CACHE}{reuse_key}/"


def cache_key(reuse_key: str, job_id: str) -> str:
    return f"{cache_prefix(reuse_key)}{job_id}.json"


def dealt(run: Sequence[int], chunksize: int) -> list[int]:
    """``run`` in the order that deals it over its tasks: with T tasks, the first takes items
    0, T, 2T... of it, the second 1, T+1... (then cut in chunks of ``chunksize``)."""
    tasks = -(-len(run) // chunksize)
    return [run[k] for j in range(tasks) for k in range(j, len(run), tasks)]


@dataclass(frozen=True)
class Manifest:
    """What a job is; enough to rebuild its Job in another process."""

    job_id: str
    name: str
    backend: str
    profile: str | None
    n_items: int
    chunksize: int
    tasks_per_shard: int
    image: str
    resources: Resources
    created: float = field(default_factory=time.time)
    settings: dict[str, Any] = field(default_factory=dict)
    #: the items that run, in task order; None: every item (nothing was reused)
    items: list[int] | None = None
    #: the content key of function, image and env under which results are cached ('': none)
    reuse_key: str = ""
    #: the outputs_to template ('': outputs stay in the store); destinations in data.json
    outputs_to: str = ""
    #: who moved the data (spmd.backend.DataRule): [inputs, outputs]
    data_rule: list[str] = field(default_factory=lambda: ["task", "task"])
    #: the most failed items before what has not started is cancelled (None: spmd.client.budget's
    #: default rule)
    max_failures: int | None = None
    #: the job a chained map (or a gather) reads results of ('': none; spmd.client.chain)
    after: str = ""
    #: item i is the result of item i of ``after`` (step2.map(job1)), not a gather
    chained: bool = False
    #: default chunks deal the items out like cards (``dealt``), so that a slow tail of items
    #: spreads over many tasks instead of straggling in the last one; False: contiguous chunks
    spread: bool = False

    @property
    def outputs_wait_for_queue(self) -> bool:
        """Whether a task's output resolves only once the queue says it ended: the host
        publishes its output files before it says so (``protocol.resolve``)."""
        return self.outputs_to != "" and self.data_rule[1] == "host"

    @cached_property
    def submitted(self) -> Sequence[int]:
        """The items the job's tasks run, in task order."""
        run = range(self.n_items) if self.items is None else self.items
        return dealt(run, self.chunksize) if self.spread else run

    @cached_property
    def reused(self) -> list[int]:
        """The items whose results came from earlier jobs (``jobs/<id>/reused.pkl``)."""
        if self.items is None:
            return []
        running = set(self.items)
        return [i for i in range(self.n_items) if i not in running]

    @cached_property
    def _positions(self) -> dict[int, int]:
        return {item: position for position, item in enumerate(self.submitted)}

    @property
    def n_tasks(self) -> int:
        return -(-len(self.submitted) // self.chunksize)

    @property
    def max_attempts(self) -> int:
        return self.resources.retries + 1

    def items_of(self, task: int) -> Sequence[int]:
        start = task * self.chunksize
        return self.submitted[start:start + self.chunksize]

    def task_of(self, item: int) -> int | None:
        """The task that runs item; None for an item reused from an earlier job."""
        if self.items is None and not self.spread:
            return item // self.chunksize
        position = self._positions.get(item)
        return None if position is None else position // self.chunksize

    def shard_of(self, task: int) -> tuple[int, int]:
        """(shard number, index inside the shard) of a task's input."""
        return divmod(task, self.tasks_per_shard)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        raw = json.loads(data)
        raw["resources"] = Resources.from_dict(raw["resources"])
        return cls(**raw)
