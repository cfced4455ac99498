"""Memory and time limits hold per task inside a warm container."""
import pytest

import spmd

pytestmark = pytest.mark.docker


def hog_or_nap(what):
    import time
    if what == "hog":
        print("allocating 600 MB", flush=True)
        block = b"x" * (600 * 2**20)
        return len(block)
    if what == "nap":
        print("going to sleep", flush=True)
        time.sleep(120)
    return what


def test_out_of_memory_and_timeout_end_only_their_task(store_dir, engine):
    config = {"store_dir": store_dir, "max_vcpus": 1}  # one warm container serves every task
    knot = spmd.Knot(hog_or_nap, vcpus=1, memory="128MiB", timeout=8, config=config)
    job = knot.map(["first", "hog", "nap", "last"], chunksize=1)
    oom = job.futures[1].exception(timeout=300)
    assert isinstance(oom, spmd.TaskOutOfMemory), oom
    assert "out of memory (limit 128" in str(oom) and "allocating 600 MB" in oom.log_tail
    timed_out = job.futures[2].exception(timeout=300)
    assert isinstance(timed_out, spmd.TaskTimedOut), timed_out
    assert "timed out after 8s" in str(timed_out) and "going to sleep" in timed_out.log_tail
    assert [job.futures[i].result(timeout=300) for i in (0, 3)] == ["first", "last"]
    # The server survived both: one container served the first task and the last.
    assert job.provenance(0)["host"] == job.provenance(3)["host"]
