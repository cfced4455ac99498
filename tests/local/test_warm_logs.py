"""Tasks served in turn by one warm container keep separate logs."""
import pytest

import spmd

pytestmark = pytest.mark.docker


def shout(x):
    print(f"item {x} says hello", flush=True)
    return x


def test_each_log_holds_only_its_own_task(store_dir, engine):
    config = {"store_dir": store_dir, "max_vcpus": 1}  # one warm container serves every task
    job = spmd.Knot(shout, vcpus=1, config=config).map(range(4), chunksize=1)
    assert job.results(timeout=300) == [0, 1, 2, 3]
    assert len({job.provenance(i)["host"] for i in range(4)}) == 1, "tasks ran in several containers"
    for i in range(4):
        log = job.logs(i)
        assert f"item {i} says hello" in log
        assert [f"item {j} says" in log for j in range(4) if j != i] == [False] * 3, log
