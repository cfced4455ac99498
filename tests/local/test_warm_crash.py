"""A task that kills its own process in a warm container loses only itself."""
import pytest

import spmd

pytestmark = pytest.mark.docker


def crash(how):
    import os
    import signal
    if how == "exit":
        os._exit(3)
    if how == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    return how


def test_os_exit_and_a_segfault_lose_only_their_own_task(store_dir, engine):
    config = {"store_dir": store_dir, "max_vcpus": 1}  # one warm container serves every task
    job = spmd.Knot(crash, vcpus=1, config=config).map(["ok", "exit", "segfault", "after"],
                                                        chunksize=1)
    assert job.futures[0].result(timeout=300) == "ok"
    assert job.futures[3].result(timeout=300) == "after"
    exited = job.futures[1].exception(timeout=300)
    assert isinstance(exited, spmd.TaskLost) and exited.exit_code == 3, exited
    assert "exited with code 3" in str(exited)
    crashed = job.futures[2].exception(timeout=300)
    assert isinstance(crashed, spmd.TaskLost) and "signal 11" in str(crashed), crashed
    # The same container ran the tasks before and after the two that died.
    assert job.provenance(0)["host"] == job.provenance(3)["host"]
