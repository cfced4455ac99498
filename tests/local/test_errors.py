"""Errors on the real Docker engine: remote exceptions, unpicklable input, lost tasks, retries."""
import os
import threading

import pytest

import spmd

pytestmark = pytest.mark.docker


class SubjectError(Exception):
    pass


def fragile(x):
    if x == 3:
        raise SubjectError(f"subject {x} has no b0 volume")
    if x == 5:
        raise ValueError("negative variance")
    return x * 10


def test_remote_exception_keeps_type_message_traceback_and_others_results(local, engine):
    job = spmd.Knot(fragile, config=local).map(range(7), chunksize=2)
    job.wait(300)
    exc = job.futures[3].exception()
    assert type(exc) is SubjectError
    assert str(exc) == "subject 3 has no b0 volume"
    assert isinstance(exc.__cause__, spmd.RemoteTraceback)
    assert "in fragile" in str(exc.__cause__)
    assert "SubjectError: subject 3 has no b0 volume" in str(exc.__cause__)
    assert type(job.futures[5].exception()) is ValueError
    assert [job.futures[i].result() for i in (0, 1, 2, 4, 6)] == [0, 10, 20, 40, 60]
    with pytest.raises(SubjectError):
        job.results()
    assert job.status()["FAILED"] == 2


def test_unpicklable_function_fails_at_map_before_anything(local, store_dir):
    lock = threading.Lock()

    def locked(x):
        with lock:
            return x

    with pytest.raises(spmd.SerializationError, match="'lock'"):
        spmd.Knot(locked, config=local).map([1, 2])
    assert not os.path.exists(os.path.join(store_dir, "spmd", "jobs"))


def test_unpicklable_argument_is_named(local, store_dir):
    with pytest.raises(spmd.SerializationError, match="input item 1"):
        spmd.Knot(str, config=local).map(["fine", threading.Lock()])
    assert not os.path.exists(os.path.join(store_dir, "spmd", "jobs"))


def hog(megabytes):
    print("allocating", megabytes, "MB", flush=True)
    block = b"x" * (megabytes * 2**20)
    return len(block)


def test_memory_limit_ends_as_out_of_memory(local, engine):
    job = spmd.Knot(hog, memory="128MiB", config=local).map([600])
    exc = job.futures[0].exception(timeout=300)
    assert isinstance(exc, spmd.TaskOutOfMemory) and isinstance(exc, spmd.TaskLost)
    assert "out of memory" in str(exc)
    assert "allocating 600 MB" in exc.log_tail


def sleepy(seconds):
    print("going to sleep", flush=True)
    import time
    time.sleep(seconds)
    return seconds


def test_timeout_ends_as_timed_out(local, engine):
    job = spmd.Knot(sleepy, timeout=3, retries=2, config=local).map([120, 0])
    exc = job.futures[0].exception(timeout=300)
    assert isinstance(exc, spmd.TaskTimedOut)
    assert "timed out after 3s" in str(exc)
    assert "going to sleep" in exc.log_tail
    assert job.futures[1].result(timeout=300) == 0  # the other item is not lost
    assert job.status()["FAILED"] == 1


def flaky(x):
    attempt = int(os.environ["SPMD_ATTEMPT"])
    if attempt < 3:
        raise RuntimeError(f"transient failure on attempt {attempt}")
    return (x, attempt)


def test_retries_rerun_a_failing_task(local, engine, caplog):
    caplog.set_level("INFO", logger="spmd")
    job = spmd.Knot(flaky, retries=2, config=local).map([7])
    assert job.results(timeout=300) == [(7, 3)]
    # A warm container retries within milliseconds, so the client may never see the task
    # PENDING between attempts; the task's log keeps every attempt and why it failed.
    assert "--- spmd: attempt 2 ---" in job.logs(0) and "--- spmd: attempt 3 ---" in job.logs(0)
    assert job.provenance(0)["attempt"] == 3
    assert job.logs(0).count("transient failure on attempt") == 2


def test_retries_run_out(local, engine):
    job = spmd.Knot(flaky, retries=1, config=local).map([7])
    with pytest.raises(RuntimeError, match="transient failure on attempt 2"):
        job.results(timeout=300)
    assert "attempt 2" in job.logs(0)


def crash(x):
    os._exit(9)


def test_crash_without_output_is_task_lost(local, engine):
    exc = spmd.Knot(crash, config=local).map([1]).futures[0].exception(timeout=300)
    assert type(exc) is spmd.TaskLost
    assert "exited with code 9" in str(exc) and exc.exit_code == 9


def test_too_big_a_task_is_refused_before_submit(local, store_dir):
    with pytest.raises(spmd.ResourceError, match="vcpus"):
        spmd.Knot(str, vcpus=64, config=local).map([1])
    assert not os.path.exists(os.path.join(store_dir, "spmd", "jobs"))


def test_output_of_a_failed_attempt_is_read_once_per_attempt(local, engine):
    knot = spmd.Knot(flaky, retries=2, config=local)
    store = knot.backend.store
    reads = []
    original = store.get_view

    def counting_view(key, start=None, end=None):
        if "/output/" in key:
            reads.append(key)
        return original(key, start, end)

    store.get_view = counting_view  # the job's watcher reads outputs through this store object
    job = knot.map([7])
    assert job.results(timeout=300) == [(7, 3)]
    assert 1 <= len(reads) <= 3 + 1  # at most once per attempt, plus one race at the end
