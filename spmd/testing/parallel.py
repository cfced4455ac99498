"""The concurrency cap on the backend under test.

    ParallelCapContract   max_parallel=2 over tasks small enough that many more would fit:
                          never more than 2 run at once (by the tasks' own start and end
                          times), every result right; a bad max_parallel is refused at map()
"""
from __future__ import annotations

import pytest

import spmd

from . import functions as fn
from .fixtures import WAIT, BackendFixtures

ITEMS = 6
CAP = 2


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:  # at equal times an end (-1) sorts before a start (+1)
        running += step
        peak = max(peak, running)
    return peak


class ParallelCapContract(BackendFixtures):
    """``max_parallel`` on the backend under test."""

    def test_parallel_no_more_than_max_parallel_tasks_run_at_once(self, spmd_knot, spmd_backend):
        capacity = spmd_backend.capacity()
        vcpus = capacity.vcpus / (CAP * 4)  # room for four times the cap
        knot = spmd_knot(fn.sleepy, vcpus=vcpus, memory=min(capacity.memory // (CAP * 4), 2**30))
        job = knot.map([1.5] * ITEMS, chunksize=1, max_parallel=CAP)
        assert job.results(timeout=WAIT) == [1.5] * ITEMS
        spans = [(job.provenance(i)["started"], job.provenance(i)["ended"]) for i in range(ITEMS)]
        assert most_at_once(spans) <= CAP, spans

    def test_parallel_a_bad_cap_is_refused_at_map(self, spmd_knot):
        with pytest.raises(spmd.ConfigError, match="max_parallel=0"):
            spmd_knot(fn.square).map(range(3), max_parallel=0)
