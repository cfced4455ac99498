"""On the local backend a job's input shards are in memory (/dev/shm) while it runs, on the
real Docker engine: tasks read them through a read-only mount, and they are freed at the end."""
import os
import shutil
import time

import pytest

import spmd
from spmd import layout

pytestmark = pytest.mark.docker

WAIT = 180


def nap_then_double(x):
    import time
    time.sleep(x[0])
    return [2 * v for v in x]


def wait_for(predicate, seconds=120, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_inputs_are_in_memory_while_the_job_runs_and_freed_after(local, engine):
    job = spmd.Knot(nap_then_double, config=local).map([[1, 2], [0.1, 3]], chunksize=1)
    held = job.backend.store.in_memory(layout.input_prefix(job.id))
    assert held is not None and str(held).startswith("/dev/shm/")
    assert sorted(p.name for p in held.iterdir()) == ["00000.bin"]
    assert job.results(timeout=WAIT) == [[2, 4], [0.2, 6]]
    wait_for(lambda: job.backend.queue._state(job.id).get("done"), what="the job to end")
    assert not held.exists()


def test_a_task_whose_inputs_are_gone_says_so(local, engine):
    # one task at a time: the second starts after its inputs were removed, as after a restart
    job = spmd.Knot(nap_then_double, config=local).map([[3, 1], [0.1, 2]], chunksize=1,
                                                       max_parallel=1)
    held = job.backend.store.in_memory(layout.input_prefix(job.id))
    wait_for(lambda: job.status()["RUNNING"] == 1, what="the first task to run")
    shutil.rmtree(held)
    error = job.futures[1].exception(timeout=WAIT)
    assert isinstance(error, spmd.TaskLost), error
    assert "inputs of job" in str(error) and "are gone" in str(error)
    assert "reuse=True" in str(error)
