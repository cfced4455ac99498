"""map-level contract: what a user sees from ``Knot.map`` and ``Job``, the same on every backend.

Each test runs a few short tasks; the functions are in ``spmd.testing.functions``.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import subprocess
import sys
import threading
import time

import pytest

import spmd
from spmd import layout
from spmd.batch_queue import CANCELLED, FAILED, PENDING, RUNNING, STATES, SUCCEEDED

from . import functions as fn
from .fixtures import WAIT, BackendFixtures, wait_for


@contextlib.contextmanager
def cancelled_at_exit(job: spmd.Job):
    """Cancel the job when the block fails, so its long tasks do not hold the next test's capacity."""
    try:
        yield job
    except BaseException:
        job.cancel()
        raise


def counts(**nonzero: int) -> dict[str, int]:
    """A ``job.status()`` value: every state, zero unless given."""
    return {state: nonzero.get(state, 0) for state in STATES}


SUBMITTER = """\
import json, sys
import spmd
from spmd.testing.functions import slow_triple
job = spmd.Knot(slow_triple, backend=sys.argv[1], config=json.loads(sys.argv[2])).map(
    range(4), chunksize=1)
print(job.id, flush=True)
sys.stdin.read()  # until killed
"""
ATTACHER = """\
import json, sys
import spmd
job = spmd.attach(sys.argv[3], backend=sys.argv[1], config=json.loads(sys.argv[2]))
print(json.dumps(job.results(timeout=float(sys.argv[4]))), flush=True)
"""


class MapContract(BackendFixtures):
    """Results, arguments, errors, states, retries, limits, cancel, logs, attach, images."""

    # -- results and arguments -----------------------------------------------------

    def test_results_in_input_order(self, spmd_knot):
        job = spmd_knot(fn.square).map(range(10), chunksize=3)
        assert len(job) == 10 and job.manifest.n_tasks == 4
        assert job.results(timeout=WAIT) == [x * x for x in range(10)]
        assert [(f.job_id, f.index) for f in job.futures] == [(job.id, i) for i in range(10)]
        assert job.status() == counts(SUCCEEDED=4)

    def test_starmap_and_keyword_arguments(self, spmd_knot):
        knot = spmd_knot(fn.add)
        star = knot.map([(1, 2), [3, 4], spmd.Args(1, 2, scale=10), spmd.Args(5)], starmap=True)
        plain = knot.map([spmd.Args(2, b=3), 4, spmd.Args(a=1, scale=-1)])
        assert star.results(timeout=WAIT) == [3, 7, 30, 5]
        assert plain.results(timeout=WAIT) == [5, 4, -1]

    def test_environment_reaches_the_task(self, spmd_knot):
        knot = spmd_knot(fn.environment, env={"SPMD_CONFORMANCE_LAB": "vision"})
        job = knot.map(["SPMD_CONFORMANCE_LAB", "SPMD_ATTEMPT", "SPMD_CONFORMANCE_UNSET"])
        assert job.results(timeout=WAIT) == ["vision", "1", None]

    def test_empty_map(self, spmd_knot):
        job = spmd_knot(fn.square).map([])
        assert len(job) == 0 and job.results(timeout=5) == []
        assert job.status() == counts()

    # -- errors ---------------------------------------------------------------------

    def test_remote_exception_keeps_type_message_and_traceback(self, spmd_knot):
        job = spmd_knot(fn.fragile).map(range(7), chunksize=2)
        assert job.wait(WAIT)
        exc = job.futures[3].exception()
        assert type(exc) is fn.SubjectError
        assert str(exc) == "subject 3 has no b0 volume"
        assert isinstance(exc.__cause__, spmd.RemoteTraceback)
        remote = str(exc.__cause__)
        assert "in fragile" in remote and "SubjectError: subject 3 has no b0 volume" in remote
        assert type(job.futures[5].exception()) is ValueError
        assert str(job.futures[5].exception()) == "negative variance"
        # The other items of the same tasks (2 and 4) and of other tasks keep their results.
        assert [job.futures[i].result() for i in (0, 1, 2, 4, 6)] == [0, 10, 20, 40, 60]
        with pytest.raises(fn.SubjectError):
            job.results()
        assert job.status() == counts(SUCCEEDED=2, FAILED=2)

    def test_unpicklable_function_is_rejected_before_anything_is_written(self, spmd_knot,
                                                                         spmd_store):
        lock = threading.Lock()

        def locked(x):
            with lock:
                return x

        before = set(spmd_store.list(layout.JOBS))
        with pytest.raises(spmd.SerializationError, match="'lock'"):
            spmd_knot(locked).map([1, 2])
        assert set(spmd_store.list(layout.JOBS)) == before

    def test_unpicklable_argument_is_rejected_before_anything_is_written(self, spmd_knot,
                                                                         spmd_store):
        before = set(spmd_store.list(layout.JOBS))
        with pytest.raises(spmd.SerializationError, match="input item 2"):
            spmd_knot(fn.square).map([1, 2, threading.Lock()], chunksize=1)
        assert set(spmd_store.list(layout.JOBS)) == before

    def test_crash_without_output_is_task_lost(self, spmd_knot):
        job = spmd_knot(fn.crash).map([9])
        exc = job.futures[0].exception(timeout=WAIT)
        assert type(exc) is spmd.TaskLost
        assert exc.exit_code == 9 and exc.job_id == job.id and exc.task == 0
        assert "exiting with code 9" in exc.log_tail
        assert job.status() == counts(FAILED=1)

    # -- states, retries, limits ----------------------------------------------------

    def test_task_states_in_order(self, spmd_knot):
        job = spmd_knot(fn.sleepy_or_fail).map([1.5, -1.5, 1.5], chunksize=1)
        seen = [job.status()]
        while not all(f.done() for f in job.futures):
            seen.append(job.status())
            time.sleep(0.05)
        assert job.wait(WAIT)
        seen.append(job.status())
        assert all(sum(s.values()) == 3 for s in seen), seen
        assert seen[0][PENDING] + seen[0][RUNNING] == 3, "a task ended before it could have"
        assert any(s[RUNNING] for s in seen), "no task was ever seen RUNNING"
        for before, after in zip(seen, seen[1:]):  # never backwards
            assert after[PENDING] <= before[PENDING], seen
            assert after[SUCCEEDED] >= before[SUCCEEDED] and after[FAILED] >= before[FAILED], seen
            assert after[CANCELLED] == 0, seen
        assert seen[-1] == counts(SUCCEEDED=2, FAILED=1)
        assert job.futures[0].result() == 1.5 and type(job.futures[1].exception()) is ValueError

    def test_retries_rerun_a_failing_task(self, spmd_knot):
        job = spmd_knot(fn.flaky, retries=2).map([spmd.Args("a", 3), spmd.Args("b", 9)],
                                                 chunksize=1)
        assert job.futures[0].result(timeout=WAIT) == ("a", 3)  # the attempt is in SPMD_ATTEMPT
        with pytest.raises(RuntimeError, match="transient failure of b on attempt 3"):
            job.futures[1].result(timeout=WAIT)
        assert job.wait(WAIT)
        assert job.provenance(0)["attempt"] == 3
        log = job.logs(1)
        assert all(f"item b attempt {n}" in log for n in (1, 2, 3)), log
        assert log.index("attempt 1") < log.index("attempt 2") < log.index("attempt 3")
        states = job.backend.queue.states(job.handle)
        assert [(states[t].state, states[t].attempts) for t in (0, 1)] == \
            [(SUCCEEDED, 3), (FAILED, 3)], states
        assert job.status() == counts(SUCCEEDED=1, FAILED=1)

    def test_timeout_ends_as_timed_out(self, spmd_knot):
        started = time.monotonic()
        # 6 s: the task must start and print before its timeout, on a loaded machine too
        job = spmd_knot(fn.sleepy, timeout=6, retries=1).map([120, 0], chunksize=1)
        with cancelled_at_exit(job):
            exc = job.futures[0].exception(timeout=WAIT)
        assert time.monotonic() - started < 90, "the task was not stopped at its timeout"
        assert isinstance(exc, spmd.TaskTimedOut) and isinstance(exc, spmd.TaskLost)
        assert exc.job_id == job.id and exc.task == 0
        assert "going to sleep for 120s" in exc.log_tail
        assert job.futures[1].result(timeout=WAIT) == 0  # the other task is not lost
        assert job.wait(WAIT)
        states = job.backend.queue.states(job.handle)
        assert states[0].attempts == 1, states  # a timeout is not retried
        assert job.status() == counts(SUCCEEDED=1, FAILED=1)

    def test_memory_limit_ends_as_out_of_memory(self, spmd_knot):
        job = spmd_knot(fn.hog, memory="128MiB").map([600, 1], chunksize=1)
        exc = job.futures[0].exception(timeout=WAIT)
        assert isinstance(exc, spmd.TaskOutOfMemory) and isinstance(exc, spmd.TaskLost)
        assert exc.job_id == job.id and exc.task == 0
        assert "allocating 600 MB" in exc.log_tail
        assert job.futures[1].result(timeout=WAIT) == 2**20  # within the limit it runs
        assert job.wait(WAIT)
        assert job.status() == counts(SUCCEEDED=1, FAILED=1)

    # -- cancel, logs, attach ---------------------------------------------------------

    def test_cancel_stops_running_and_pending_tasks(self, spmd_knot, spmd_exclusive):
        # Each task takes the whole capacity: one runs at a time, in order.
        job = spmd_knot(fn.sleepy, **spmd_exclusive).map([0, 120, 120], chunksize=1)
        with cancelled_at_exit(job):
            assert job.futures[0].result(timeout=WAIT) == 0
            # (A result arrives when the task writes it; the task ends a moment later.)
            wait_for(lambda: job.status() == counts(SUCCEEDED=1, RUNNING=1, PENDING=1),
                     what="the first task ended, the second running, the third pending")
            time.sleep(2)  # RUNNING comes as its process starts; let it print before it is killed
            started = time.monotonic()
            job.cancel()
            assert job.wait(WAIT)
        assert time.monotonic() - started < 60, "cancel did not stop the running task"
        assert job.futures[0].result() == 0  # a finished result stays
        assert job.futures[1].cancelled() and job.futures[2].cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            job.results()
        assert job.status() == counts(SUCCEEDED=1, CANCELLED=2)
        states = job.backend.queue.states(job.handle)
        # The running task made one attempt; the pending one never ran.
        assert (states[1].attempts, states[2].attempts) == (1, 0), states
        assert "going to sleep for 120s" in job.logs(1)  # the killed task's log is kept

    def test_logs_after_the_task_ends(self, spmd_knot):
        job = spmd_knot(fn.chatty).map(["alpha", "beta"], chunksize=1)
        assert job.wait(WAIT)
        assert "working on item beta" in job.logs(1)
        assert "working on item alpha" not in job.logs(1)
        assert "working on item alpha" in job.logs(0)
        with pytest.raises(IndexError):
            job.logs(2)

    def test_attach_from_a_fresh_client(self, spmd_knot, spmd_attach):
        job = spmd_knot(fn.slow_triple).map(range(3), chunksize=1)
        again = spmd_attach(job.id)
        assert again is not job and again.id == job.id and len(again) == 3
        assert again.manifest == job.manifest and again.handle == job.handle
        assert again.results(timeout=WAIT) == [0, 3, 6]
        assert again.status() == counts(SUCCEEDED=3)
        with pytest.raises(spmd.JobNotFound):
            spmd_attach("conformance-no-such-job")

    def test_attach_from_another_process(self, spmd_backend_name, spmd_backend_config,
                                         spmd_attach):
        # A client submits and is killed; another process attaches by id and gets the results.
        config = json.dumps(spmd_backend_config)
        client = subprocess.Popen([sys.executable, "-c", SUBMITTER, spmd_backend_name, config],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            job_id = client.stdout.readline().strip()
        finally:
            client.kill()
            client.wait(timeout=30)
        assert job_id, "the submitting client printed no job id"
        other = subprocess.run([sys.executable, "-c", ATTACHER, spmd_backend_name, config, job_id,
                                str(WAIT)], capture_output=True, text=True, timeout=WAIT + 30)
        assert other.returncode == 0, other.stderr
        assert json.loads(other.stdout.strip().splitlines()[-1]) == [0, 3, 6, 9]
        here = spmd_attach(job_id)
        assert here.results(timeout=WAIT) == [0, 3, 6, 9]
        assert here.status() == counts(SUCCEEDED=4)

    # -- images ---------------------------------------------------------------------

    def test_image_reuse(self, spmd_knot, spmd_backend, monkeypatch):
        knot = spmd_knot(fn.square)
        if not type(spmd_backend).uses_images:
            # No image at all: map works with no container engine and builds nothing.
            from .. import docker_engine
            from ..images import build as image

            def no_engine():
                raise spmd.EngineError("the conformance kit hid the container engine")

            def no_build(*args, **kwargs):
                raise AssertionError("a backend without images asked for one")

            monkeypatch.setattr(docker_engine, "client", no_engine)
            monkeypatch.setattr(image, "ensure", no_build)
            job = knot.map([3])
            assert job.manifest.image == ""
            assert job.results(timeout=WAIT) == [9]
            return
        first = knot.ensure_image()
        second = spmd_knot(fn.add, env={"ANY": "thing"}).ensure_image()  # same requirements
        assert second.built is False
        assert (second.reference, second.tag) == (first.reference, first.tag)
        assert spmd_backend.registry.exists(first.tag)
        job = knot.map([3])
        assert job.manifest.image == first.reference
        assert job.results(timeout=WAIT) == [9]
