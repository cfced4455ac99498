"""Cancel, and jobs that outlive their client, on the real Docker engine."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import spmd
from spmd.scheduling import queue_key

pytestmark = pytest.mark.docker


def nap(x):
    import time
    time.sleep(x)
    return x


def wait_for(predicate, seconds=120, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_cancel_stops_running_and_never_starts_pending(local, engine):
    job = spmd.Knot(nap, config=local).map([60] * 6, chunksize=1)  # 2 run, 4 wait
    wait_for(lambda: job.status()["RUNNING"] == 2, what="two running tasks")
    started = time.monotonic()
    job.cancel()
    assert job.wait(timeout=120)
    assert time.monotonic() - started < 60  # the 60 s naps were cut short
    assert all(f.cancelled() for f in job.futures)
    assert job.status()["CANCELLED"] == 6
    assert engine.containers.list(all=True, filters={"label": f"spmd.job={job.id}"}) == []
    attempts = [s.attempts for s in job.backend.queue.states(job.handle).values()]
    assert sorted(attempts) == [0, 0, 0, 0, 1, 1]  # the 4 pending tasks never started
    assert sum("cancelled" in job.logs(t) for t in range(6)) == 2
    import concurrent.futures
    with pytest.raises(concurrent.futures.CancelledError):
        job.results()


def test_cancel_keeps_finished_results(local, engine):
    job = spmd.Knot(nap, config=local).map([0, 60], chunksize=1)
    assert job.futures[0].result(timeout=120) == 0
    job.cancel()
    assert job.wait(timeout=120)
    assert job.futures[0].result() == 0
    assert job.futures[1].cancelled()


def test_attach_from_a_new_client(local, engine):
    job = spmd.Knot(nap, config=local).map([0, 1, 0], chunksize=1)
    again = spmd.attach(job.id, config=local)
    assert again.id == job.id and len(again) == 3
    assert again.results(timeout=120) == [0, 1, 0]


def test_attach_unknown_job(local):
    with pytest.raises(spmd.JobNotFound, match="no-such-job"):
        spmd.attach("no-such-job", config=local)


def test_job_survives_sigkill_of_its_client(tmp_path, local, engine):
    script = tmp_path / "submit.py"
    script.write_text(textwrap.dedent(f"""
        import time
        import spmd

        def slow_triple(x):
            import time
            time.sleep(2)
            return 3 * x

        job = spmd.Knot(slow_triple, config={local!r}).map(range(6), chunksize=1)
        print(job.id, flush=True)
        time.sleep(600)
    """))
    client = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    job_id = client.stdout.readline().strip()
    assert job_id, "the client printed no job id"
    job = spmd.attach(job_id, config=local)
    wait_for(lambda: job.status()["RUNNING"] > 0, what="a running task")
    os.kill(client.pid, signal.SIGKILL)
    client.wait(timeout=30)
    assert job.done() is False  # killed mid-run
    reattached = spmd.attach(job_id, config=local)
    assert reattached.results(timeout=300) == [0, 3, 6, 9, 12, 15]
    assert reattached.status()["SUCCEEDED"] == 6


def test_a_killed_scheduler_is_replaced_once_while_two_clients_watch(local, engine):
    """Both clients see the scheduler gone and may each start one: one takes the job's lock
    and adopts the running tasks, the other leaves. No attempt runs twice."""
    job = spmd.Knot(nap, config=local).map([2] * 6, chunksize=1)
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import spmd
        print(spmd.attach({job.id!r}, config={local!r}).results(timeout=300))
    """)], stdout=subprocess.PIPE, text=True)
    wait_for(lambda: job.status()["RUNNING"] == 2, what="two running tasks")
    pid = job.backend.queue._state(job.id)["pid"]
    os.kill(pid, signal.SIGKILL)
    assert job.results(timeout=300) == [2] * 6
    assert other.communicate(timeout=120)[0].strip() == str([2] * 6)
    assert job.backend.queue._state(job.id)["pid"] != pid
    assert job.status()["SUCCEEDED"] == 6
    log = job.backend.queue.store.path(queue_key(job.id, "scheduler.log")).read_text()
    assert log.count("resumed:") == 1, log
    assert all(job.provenance(i)["attempt"] == 1 for i in range(6))  # running tasks were adopted
