"""Chained maps and group steps on the backend under test.

    ChainContract   step2.map(job1): item i runs once item i of job 1 ended, with its result
                    as input, before job 1 has ended; a failed upstream item fails its
                    downstream item alone with UpstreamFailed naming the item and its error;
                    spmd.gather(job) gives one task every result of a job;
                    spmd.upstream_files() holds the upstream item's output files
"""
from __future__ import annotations

import pytest

import spmd

from . import data_functions as data_fn
from . import functions as fn
from .fixtures import WAIT, BackendFixtures


class ChainContract(BackendFixtures):
    """``map(job)`` and ``gather(job)`` on the backend under test."""

    def test_chain_item_by_item_without_waiting_for_the_whole_job(self, spmd_knot):
        first = spmd_knot(fn.sleepy_or_fail).map([0.5, -0.5, 0.5, 8], chunksize=1)
        second = spmd_knot(fn.square).map(first)
        assert second.futures[0].result(timeout=WAIT) == pytest.approx(0.25)
        error = second.futures[1].exception(timeout=WAIT)
        assert isinstance(error, spmd.UpstreamFailed), error
        assert error.item == 1 and error.job_id == first.id and "ValueError" in str(error)
        assert second.futures[3].result(timeout=WAIT) == 64
        # item 0 of step 2 started before job 1's last item had ended
        assert second.provenance(0)["started"] < first.provenance(3)["ended"]

    def test_chain_a_group_step_gathers_every_result(self, spmd_knot):
        first = spmd_knot(fn.square).map(range(5), chunksize=2)
        group = spmd_knot(sum).map([spmd.gather(first)])
        assert group.results(timeout=WAIT) == [0 + 1 + 4 + 9 + 16]

    def test_chain_the_upstream_items_files_are_there(self, spmd_knot):
        first = spmd_knot(data_fn.write_outputs).map(["a", "b"], chunksize=1)
        second = spmd_knot(data_fn.read_upstream_result).map(first)
        assert second.results(timeout=WAIT) == [("result of a", "a"), ("result of b", "b")]
