"""Chained maps and gather: what map() refuses before anything is submitted."""
import pytest

import spmd
from spmd.testing import functions, memory


def test_a_part_of_a_jobs_futures_is_refused(knot):
    job = knot(functions.square).map(range(4))
    with pytest.raises(spmd.ConfigError, match="part of job"):
        knot(functions.square).map(job.futures[1:3])


def test_starmap_and_another_chunksize_are_refused(knot):
    job = knot(functions.square).map(range(4), chunksize=2)
    with pytest.raises(spmd.ConfigError, match="starmap=True with a chained map"):
        knot(functions.add).map(job, starmap=True)
    with pytest.raises(spmd.ConfigError, match="chunksize=1: a chained map keeps"):
        knot(functions.square).map(job, chunksize=1)


def test_gather_checks_its_items_and_one_job_per_map(knot):
    one, two = knot(functions.square).map(range(3)), knot(functions.square).map(range(3))
    with pytest.raises(spmd.ConfigError, match=r"has items 0\.\.2, not \[7\]"):
        spmd.gather(one, items=[0, 7])
    with pytest.raises(spmd.ConfigError, match="takes a Job"):
        spmd.gather([1, 2])
    with pytest.raises(spmd.ConfigError, match="results of 2 jobs"):
        knot(functions.add).map([(spmd.gather(one), spmd.gather(two))], starmap=True)


def test_an_item_the_engine_did_not_run_says_which_input_failed(knot):
    # Batch fails a child whose N_TO_N dependency failed, without running it; Slurm cancels an
    # array task whose aftercorr cannot be met: the client names the failed input then.
    first = knot(functions.fragile).map(range(4), chunksize=1)
    first.wait(30)
    k = knot(functions.square)
    lost = memory.Fault("error", "Dependent Job failed")
    k.backend.queue.faults.update({t: {1: lost} for t in range(4)})
    second = k.map(first)
    errors = [f.exception(timeout=30) for f in second.futures]
    for i, error in enumerate(errors):
        if first.futures[i].exception() is None:
            assert type(error) is spmd.TaskLost and "Dependent Job failed" in str(error)
        else:
            assert isinstance(error, spmd.UpstreamFailed) and error.item == i, error
            assert type(first.futures[i].exception()).__name__ in str(error)
