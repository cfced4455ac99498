"""The data a job's scheduler moves itself (``DataRule`` "host"): tasks keep no network.

    data.json (URL inputs per item) ──> fetch, in task order, once per version,
                                        into <store>/data/urls/<digest>/<name>
                                        (read-only in the task's container) ──> task admitted
    attempt ended ──> files under jobs/<id>/files/<item>/ ──publish──> the item's destination
                  ──> removed from the store ──> only then the task's state says it ended

The client resolves a job whose outputs the host publishes only on the queue's end state
(``protocol.resolve(wait_for_queue=True)``), so a result never arrives before its files.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from spmd import data, layout, remote
from spmd.errors import ObjectNotFound
from spmd.layout import Manifest

from ..stores.directory import DirectoryStore

log = logging.getLogger("spmd.scheduler")

FETCH_THREADS = 4


class HostData:
    """Fetches a job's URL inputs before its tasks start and publishes their outputs after."""

    def __init__(self, store: DirectoryStore, job_id: str, manifest: Manifest, job: data.JobData):
        self.store = store
        self.job_id = job_id
        self.manifest = manifest
        self.job = job
        rule = manifest.data_rule
        self.fetches = rule[0] == "host" and bool(job.inputs)
        self.publishes = rule[1] == "host" and job.destinations is not None
        self.cache = store.path(remote.CACHE)
        self._pool: ThreadPoolExecutor | None = None
        self._fetching: dict[str, Future] = {}

    @classmethod
    def of(cls, store: DirectoryStore, job_id: str) -> "HostData | None":
        """The job's HostData when its scheduler has anything to move; else None."""
        try:
            manifest = Manifest.from_json(store.get(layout.manifest_key(job_id)))
        except ObjectNotFound:  # an array submitted without a map (the kit's queue tests)
            return None
        if "host" not in manifest.data_rule:
            return None
        found = cls(store, job_id, manifest, data.JobData.load(store, job_id))
        return found if found.fetches or found.publishes else None

    # -- inputs ---------------------------------------------------------------------

    def needs(self, task: int) -> list[remote.UrlRef]:
        refs = {}
        for item in self.manifest.items_of(task):
            for ref in self.job.inputs_of(item):
                if not ref.in_place:
                    refs[ref.digest] = ref
        return list(refs.values())

    def fetch_for(self, tasks: list[int]) -> None:
        """Start fetching what tasks read, in their order, FETCH_THREADS at a time."""
        if not self.fetches:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix=f"job-{self.job_id}-fetch")
        for task in tasks:
            for ref in self.needs(task):
                if ref.digest not in self._fetching:
                    self._fetching[ref.digest] = self._pool.submit(remote.fetch, ref, self.cache)

    def ready(self, task: int) -> bool | str:
        """True when every input of task is in the cache; an error text when one cannot be had."""
        if not self.fetches:
            return True
        for ref in self.needs(task):
            future = self._fetching.get(ref.digest)
            if future is None:
                self.fetch_for([task])
                return False
            if not future.done():
                return False
            error = future.exception()
            if error is not None:
                return f"cannot fetch {ref.url} (version {ref.version}): {error}"
        return True

    # -- outputs --------------------------------------------------------------------

    def publish(self, task: int) -> str | None:
        """Publish the files the task's items left in the store; an error text when that fails."""
        if not self.publishes:
            return None
        for item in self.manifest.items_of(task):
            destination = self.job.destination(item)
            prefix = data.files_prefix(self.job_id, item)
            folder = self.store.path(prefix)
            if destination is None or not folder.is_dir():
                continue
            try:
                remote.publish(folder, destination, self.job.options)
            except Exception as exc:
                return f"publishing item {item}'s outputs to {destination} failed: {exc}"
            self.store.delete_prefix(prefix)
            log.info("item %d: outputs published to %s", item, destination)
        return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
