"""Faults injected from outside, the same on every backend: nothing hangs.

    FaultContract   a damaged output fails only its own items (spmd.ResultDamaged naming the
                    object) while the others resolve; on a store that refuses every write,
                    attach, status, logs, results of finished items and the report still work;
                    a job its scheduler no longer knows resolves from the store: items with
                    output succeed, the rest fail TaskLost "no longer knows this job"

``ReadOnlyStore`` wraps any ObjectStore and refuses writes as a disk remounted read-only
does (``OSError`` EROFS); reads go through to the real store.
"""
from __future__ import annotations

import errno

import spmd
from spmd import layout
from ..client.job import load

from . import functions as fn
from .fixtures import WAIT, BackendFixtures


class ReadOnlyStore:
    """A store whose writes fail with EROFS, as on a disk the kernel remounted read-only."""

    _WRITES = ("put", "put_parts", "put_file", "put_json", "delete", "delete_prefix")

    def __init__(self, store: spmd.ObjectStore):
        self._store = store

    def __getattr__(self, name: str):
        if name in self._WRITES:
            def refuse(*args, **kwargs):
                raise OSError(errno.EROFS, "Read-only file system", name)
            return refuse
        return getattr(self._store, name)


class FaultContract(BackendFixtures):
    """Damaged results and read-only stores on the backend under test."""

    def test_fault_a_damaged_output_fails_only_its_items(self, spmd_knot, spmd_store, spmd_attach):
        job = spmd_knot(fn.square).map(range(3), chunksize=1)
        assert job.results(timeout=WAIT) == [0, 1, 4]
        key = layout.output_key(job.id, 1)
        spmd_store.put(key, spmd_store.get(key)[:-7])  # truncated
        again = spmd_attach(job.id)
        error = again.futures[1].exception(timeout=WAIT)
        assert isinstance(error, spmd.ResultDamaged), error
        assert key in str(error)
        assert [again.futures[i].result(timeout=WAIT) for i in (0, 2)] == [0, 4]

    def test_fault_a_read_only_store_still_answers(self, spmd_knot, spmd_fresh_backend):
        job = spmd_knot(fn.chatty).map(range(2), chunksize=1)
        assert job.results(timeout=WAIT) == job.results()
        job.wait(timeout=WAIT)
        backend = spmd_fresh_backend()
        backend.__dict__["store"] = ReadOnlyStore(backend.store)  # before the queue is made
        again = load(backend, job.id)
        assert again.results(timeout=WAIT) == job.results()
        assert again.status()["SUCCEEDED"] == 2
        assert again.logs(1) == job.logs(1) and again.logs(1)
        assert [row.state for row in again.report().rows] == ["SUCCEEDED", "SUCCEEDED"]

    def test_fault_a_job_the_scheduler_forgot_resolves_from_the_store(
            self, spmd_knot, spmd_store, spmd_attach, spmd_forget_job):
        job = spmd_knot(fn.square).map(range(3), chunksize=1)
        assert job.results(timeout=WAIT) == [0, 1, 4]
        job.wait(timeout=WAIT)
        spmd_store.delete(layout.output_key(job.id, 2))  # as if its task never ended
        spmd_forget_job(job.id)
        again = spmd_attach(job.id)
        assert [again.futures[i].result(timeout=WAIT) for i in (0, 1)] == [0, 1]
        error = again.futures[2].exception(timeout=WAIT)
        assert isinstance(error, spmd.TaskLost), error
        assert "no longer knows this job" in str(error), error
        status = again.status()
        assert (status["SUCCEEDED"], status["FAILED"]) == (2, 1), status
