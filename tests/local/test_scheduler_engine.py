"""The scheduler kept alive after its job (spmd.scheduling.engine), on the real Docker engine:
the next job of the same user, code and environment is handed to it instead of a new
process, and whatever happens to it, jobs still end."""
import os
import signal
import time

import pytest

import spmd
from spmd.scheduling import queue_key

pytestmark = pytest.mark.docker

WAIT = 180


def nap(x):
    import time
    time.sleep(x)
    return x


def wait_for(predicate, seconds=120, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def pid_of(job) -> int:
    return job.backend.queue._state(job.id)["pid"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of this process (the first scheduler is its child) counts as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def scheduler_log(job) -> str:
    return job.backend.store.get(queue_key(job.id, "scheduler.log")).decode(errors="replace")


@pytest.fixture
def own_engine(monkeypatch, tmp_path):
    """An environment no other test shares, so this test's engine is its own."""
    monkeypatch.setenv("SPMD_TEST_ENGINE", str(tmp_path))


def test_the_next_job_is_handed_to_the_scheduler_kept_alive(local, engine, own_engine):
    knot = spmd.Knot(nap, config=local)
    first = knot.map([0.1, 0.2], chunksize=1)
    assert first.results(timeout=WAIT) == [0.1, 0.2]
    second = knot.map([0.3, 0.4], chunksize=1)
    assert second.results(timeout=WAIT) == [0.3, 0.4]
    third = spmd.Knot(nap, config=local).map([0.5], chunksize=1)  # another Knot, same user
    assert third.results(timeout=WAIT) == [0.5]
    assert pid_of(second) == pid_of(first) == pid_of(third)
    assert f"run by the engine (pid {pid_of(first)})" in scheduler_log(second)
    assert all(r.attempts == 1 for r in second.report().rows)


def test_a_job_submitted_while_another_runs_is_run_by_the_same_engine(local, engine, own_engine):
    knot = spmd.Knot(nap, config=local)
    first = knot.map([8], chunksize=1)
    wait_for(lambda: first.status()["RUNNING"] == 1, what="the first job's task to run")
    second = knot.map([0.1], chunksize=1)  # a study's next step, or another notebook cell
    assert second.results(timeout=WAIT) == [0.1]
    assert not first.futures[0].done()
    assert first.results(timeout=WAIT) == [8]
    assert pid_of(second) == pid_of(first)
    # each job's scheduler.log has its own lines only
    assert f"spmd-{second.id}-w" in scheduler_log(second)
    assert f"spmd-{first.id}-w" not in scheduler_log(second)
    assert f"spmd-{second.id}-w" not in scheduler_log(first)


def test_a_job_in_another_environment_gets_a_scheduler_of_its_own(local, engine, own_engine,
                                                                 monkeypatch):
    knot = spmd.Knot(nap, config=local)
    first = knot.map([0.1])
    assert first.results(timeout=WAIT) == [0.1]
    # the scheduler fetches URL inputs and talks to Docker with its environment: another
    # one (here a variable set in the notebook between two maps) must not reuse it
    monkeypatch.setenv("SPMD_TEST_ENGINE_OTHER", "1")
    second = knot.map([0.2])
    assert second.results(timeout=WAIT) == [0.2]
    assert pid_of(second) != pid_of(first)


def test_a_killed_idle_engine_leaves_the_next_job_to_a_new_process(local, engine, own_engine):
    knot = spmd.Knot(nap, config=local)
    first = knot.map([0.1])
    assert first.results(timeout=WAIT) == [0.1]
    wait_for(lambda: first.backend.queue._state(first.id).get("done"), what="the job to end")
    pid = pid_of(first)
    os.kill(pid, signal.SIGKILL)  # its socket file stays behind
    wait_for(lambda: not alive(pid), what="the engine to die")
    second = knot.map([0.2, 0.3], chunksize=1)
    assert second.results(timeout=WAIT) == [0.2, 0.3]
    assert pid_of(second) != pid


def test_an_engine_killed_under_a_handed_job_is_replaced_and_the_job_resumes(local, engine,
                                                                           own_engine):
    knot = spmd.Knot(nap, config=local)
    assert knot.map([0.1]).results(timeout=WAIT) == [0.1]
    job = knot.map([6, 6, 0.1, 0.1], chunksize=1)
    wait_for(lambda: job.status()["RUNNING"] == 2, what="two running tasks")
    pid = pid_of(job)
    assert "run by the engine" in scheduler_log(job)
    os.kill(pid, signal.SIGKILL)
    assert job.results(timeout=WAIT) == [6, 6, 0.1, 0.1]
    assert pid_of(job) != pid
    # the running tasks were adopted, not run again
    assert [r.attempts for r in job.report().rows] == [1, 1, 1, 1]


def test_an_idle_engine_ends_after_its_linger(local, engine, own_engine, monkeypatch):
    monkeypatch.setenv("SPMD_ENGINE_LINGER", "1")
    job = spmd.Knot(nap, config=local).map([0.1])
    assert job.results(timeout=WAIT) == [0.1]
    pid = pid_of(job)
    wait_for(lambda: not alive(pid), seconds=60, what="the idle engine to end")
    assert job.backend.queue._state(job.id)["done"]


def test_with_linger_0_each_job_has_its_own_process(local, engine, own_engine, monkeypatch):
    monkeypatch.setenv("SPMD_ENGINE_LINGER", "0")
    knot = spmd.Knot(nap, config=local)
    first = knot.map([0.1])
    assert first.results(timeout=WAIT) == [0.1]
    wait_for(lambda: not alive(pid_of(first)), what="the first scheduler to end")
    second = knot.map([0.2])
    assert second.results(timeout=WAIT) == [0.2]
    assert pid_of(second) != pid_of(first)


def test_sigterm_to_the_engine_ends_each_of_its_jobs_with_the_reason(local, engine, own_engine):
    knot = spmd.Knot(nap, config=local)
    first = knot.map([60], chunksize=1)
    wait_for(lambda: first.status()["RUNNING"] == 1, what="the first job's task to run")
    second = knot.map([60], chunksize=1)
    wait_for(lambda: second.status()["RUNNING"] == 1, what="the second job's task to run")
    pid = pid_of(first)
    assert pid_of(second) == pid
    os.kill(pid, signal.SIGTERM)
    for job in (first, second):
        error = job.futures[0].exception(timeout=WAIT)
        assert isinstance(error, spmd.TaskLost), error
        assert "engine running this job was stopped" in str(error)
    wait_for(lambda: not alive(pid), what="the engine to exit")
