"""Rerun contract: reruns skip finished work, and tasks killed for memory get more.

    map(items, reuse=True) after a map whose one item failed and was fixed ──> one task
    a changed function ──> every item runs again
    a rerun while the first job still runs ──> that same job (attached), nothing submitted
    memory=[small, large]: the task killed at small runs again at large, alone
"""
from __future__ import annotations

import pytest

import spmd

from . import functions as fn
from .fixtures import WAIT, BackendFixtures
from .map import counts


class RerunContract(BackendFixtures):
    """``reuse=True`` and memory sizes that grow after an out-of-memory kill."""

    @pytest.fixture
    def subjects(self, tmp_path):
        """Ten input files; the eighth holds bad data."""
        folder = tmp_path / "subjects"
        folder.mkdir()
        paths = []
        for i in range(10):
            path = folder / f"sub-{i:02d}.txt"
            path.write_text("bad" if i == 7 else f"subject {i}")
            paths.append(path)
        return paths

    def test_rerun_after_a_fix_runs_only_the_fixed_item(self, spmd_knot, subjects):
        knot = spmd_knot(fn.read_checked)
        first = knot.map([spmd.File(p) for p in subjects], chunksize=10, reuse=True)
        assert first.wait(WAIT)
        assert type(first.futures[7].exception()) is ValueError
        subjects[7].write_text("subject 7, fixed")

        again = knot.map([spmd.File(p) for p in subjects], chunksize=10, reuse=True)
        assert again.id != first.id
        assert again.manifest.items == [7] and again.manifest.n_tasks == 1
        assert all(again.futures[i].done() for i in range(10) if i != 7)  # reused: done at once
        assert again.results(timeout=WAIT) == [f"subject {i}" for i in range(7)] + \
            ["subject 7, fixed", "subject 8", "subject 9"]
        assert again.status() == counts(SUCCEEDED=1)  # one task ran, not ten items' worth
        assert again.provenance(3)["reused_from"] == first.id
        report = again.report()
        assert [row.item for row in report] == list(range(10))
        assert report[3].reasons == (f"reused from job {first.id}",) and report[7].attempts == 1

        changed = spmd_knot(fn.read_upper).map([spmd.File(p) for p in subjects], chunksize=10,
                                               reuse=True)
        assert changed.manifest.items is None and len(changed.manifest.submitted) == 10
        assert changed.results(timeout=WAIT)[7] == "SUBJECT 7, FIXED"

    def test_rerun_of_a_running_job_attaches_to_it(self, spmd_knot):
        knot = spmd_knot(fn.slow_triple)  # a task of 1 s at least: still running at the rerun
        first = knot.map([2], reuse=True)
        again = knot.map([2], reuse=True)  # as after a client crash
        assert again.id == first.id and again.handle == first.handle
        assert again.results(timeout=WAIT) == [6] and first.results(timeout=WAIT) == [6]
        done = knot.map([2], reuse=True)  # finished now: all reused, nothing submitted
        assert done.id != first.id and done.manifest.n_tasks == 0 and done.handle == ""
        assert done.results(timeout=5) == [6] and done.status() == counts()

    def test_out_of_memory_runs_again_with_the_next_size(self, spmd_knot, spmd_backend,
                                                         spmd_store):
        knot = spmd_knot(fn.hog, memory=["256MiB", "1GiB"])
        if not type(spmd_backend.queue).grows_memory:
            before = set(spmd_store.list("jobs/"))
            with pytest.raises(spmd.ResourceError, match="give one size"):
                knot.map([600, 1], chunksize=1)
            assert set(spmd_store.list("jobs/")) == before
            return
        job = knot.map([600, 1], chunksize=1)
        assert job.results(timeout=WAIT) == [600 * 2**20, 2**20]
        states = job.backend.queue.states(job.handle)
        assert [states[0].attempts, states[1].attempts] == [2, 1], states
        assert job.status() == counts(SUCCEEDED=2)
        assert job.provenance(0)["attempt"] == 2
        assert "out of memory" in job.report()[0].reasons[0]
