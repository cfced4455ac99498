"""Faults from outside on the local backend's store: a damaged result after the job, a store
that turns read-only while the job runs (a bind mount remounted read-only, as ext4 does on
errors), a scheduler that died before it wrote any state. None of them hangs results()."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import docker.errors

import spmd
from spmd import layout
from spmd.scheduling import client as scheduler_client
from spmd.testing import functions
from spmd.testing.fixtures import wait_for

pytestmark = pytest.mark.docker
WAIT = 180


def nap(seconds):
    time.sleep(seconds)
    return seconds


def test_a_damaged_result_fails_its_item_and_the_others_resolve(local, engine):
    job = spmd.Knot(functions.square, config=local).map(range(5), chunksize=1)
    assert job.results(timeout=WAIT) == [0, 1, 4, 9, 16]
    path = Path(local["store_dir"]) / "spmd" / layout.output_key(job.id, 3)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    again = spmd.attach(job.id, config=local)
    error = again.futures[3].exception(timeout=WAIT)
    assert isinstance(error, spmd.ResultDamaged) and layout.output_key(job.id, 3) in str(error)
    assert [again.futures[i].result(timeout=WAIT) for i in (0, 1, 2, 4)] == [0, 1, 4, 16]


@pytest.fixture
def remountable(tmp_path):
    """A store folder on a bind mount this test may remount read-only (root only)."""
    real, mounted = tmp_path / "real", tmp_path / "store"
    real.mkdir()
    mounted.mkdir()
    subprocess.run(["mount", "--bind", str(real), str(mounted)], check=True)
    yield mounted
    subprocess.run(["umount", "-l", str(mounted)], check=False)


def _try_read_only(path) -> bool:
    return subprocess.run(["mount", "-o", "remount,bind,ro", str(path)],
                          capture_output=True).returncode == 0


def test_a_store_turned_read_only_ends_the_job_with_a_reason(remountable, engine):
    config = {"store_dir": str(remountable), "max_vcpus": 2}
    job = spmd.Knot(nap, config=config).map([0.1, 0.1, 30, 30], chunksize=1)
    assert job.futures[0].result(timeout=WAIT) == 0.1
    job.futures[1].result(timeout=WAIT)
    wait_for(lambda: job.status()["SUCCEEDED"] == 2, what="the scheduler to record both")
    # A scheduler dies on its first write to a read-only store; the kernel refuses to remount
    # a folder that a process holds open for writing, so it dies first here.
    # Its task containers hold their logs open too: they go with it, as on a failing disk.
    os.kill(job.backend.queue._state(job.id)["pid"], signal.SIGKILL)
    for container in engine.containers.list(filters={"label": f"spmd.job={job.id}"}):
        try:
            container.remove(force=True)
        except docker.errors.APIError:  # already going: removal in progress, or gone
            pass
    wait_for(lambda: _try_read_only(remountable), seconds=60, what="the store to remount read-only")
    errors = [job.futures[i].exception(timeout=WAIT) for i in (2, 3)]
    assert all(isinstance(e, spmd.TaskLost) for e in errors), errors
    assert "read-only" in str(errors[0]).lower()
    # finished items stay readable, and status and logs need no write
    again = spmd.attach(job.id, config=config)
    assert again.futures[0].result(timeout=WAIT) == 0.1
    assert again.status()["SUCCEEDED"] == 2
    assert again.logs(0) == job.logs(0)


def test_a_scheduler_that_dies_at_its_start_is_replaced_then_given_up(local, engine,
                                                                      monkeypatch):
    monkeypatch.setattr(scheduler_client, "RESTART_GRACE", 0.5)
    job = spmd.Knot(functions.square, config=local).map(range(2), chunksize=1)
    job.results(timeout=WAIT)
    # As if its scheduler had died before running anything: no state, no output, and every
    # scheduler started for it dies at once (its spec has no resources).
    store, queue = job.backend.store, f"jobs/{job.id}/queue/"
    wait_for(lambda: not job.backend.queue.scheduler_alive(job.id), what="the scheduler to end")
    store.delete(queue + "state.json")
    store.delete_prefix(f"jobs/{job.id}/output/")
    spec = store.get_json(queue + "spec.json")
    spec["spec"]["resources"] = None
    store.put_json(queue + "spec.json", spec)
    again = spmd.attach(job.id, config=local)
    error = again.futures[0].exception(timeout=WAIT)
    assert isinstance(error, spmd.TaskLost), error
    assert "scheduler died" in str(error) and "scheduler.log" in str(error)
