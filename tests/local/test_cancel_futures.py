"""When job.cancel() returns, every item whose task had not finished reports cancelled()."""
import pytest

import spmd

pytestmark = pytest.mark.docker


def sleepy(seconds):
    import time
    time.sleep(seconds)
    return seconds


def test_futures_are_cancelled_when_cancel_returns(local, engine):
    job = spmd.Knot(sleepy, config=local).map([0, 60, 60, 60], chunksize=1)
    assert job.futures[0].result(timeout=300) == 0
    job.cancel()
    assert [f.cancelled() for f in job.futures] == [False, True, True, True]
    assert job.futures[0].result() == 0  # a finished result stays
    assert job.wait(120)
    assert job.status()["CANCELLED"] == 3
