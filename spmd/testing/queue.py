"""BatchQueue alone: submit a small ArraySpec of a plain command and watch each task's state.

The command is ``python3 -c SCRIPT``; each task reads what to do from SPMD_CONFORMANCE_PLAN
(one word per task index): ``ok``, ``sleepN``, ``exitN``, ``fail-once`` (exit 1 on the first
attempt only). The image is the backend's task image (built once by ``ensure_image``), or
none for a backend that runs tasks without images.
"""
from __future__ import annotations

import contextlib
import time

import pytest

from spmd import layout
from spmd.batch_queue import (
    CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, TERMINAL, ArraySpec, Resources, TaskStatus,
)

from .fixtures import WAIT, BackendFixtures, wait_for
from .functions import square

SCRIPT = """\
import os, sys, time
index = int(os.environ["AWS_BATCH_JOB_ARRAY_INDEX"]) + int(os.environ.get("SPMD_TASK_OFFSET", "0"))
attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT") or os.environ.get("SPMD_ATTEMPT") or 1)
word = os.environ["SPMD_CONFORMANCE_PLAN"].split(",")[index]
print(f"conformance task {index} attempt {attempt}: {word}", flush=True)
if word.startswith("sleep"):
    time.sleep(float(word[5:]))
elif word.startswith("exit"):
    sys.exit(int(word[4:]))
elif word == "fail-once" and attempt == 1:
    sys.exit(1)
print(f"conformance task {index} attempt {attempt} done", flush=True)
"""
RANK = {PENDING: 0, RUNNING: 1, SUCCEEDED: 2, FAILED: 2, CANCELLED: 2}


def watch(queue, handle: str, n: int, seconds: float = WAIT):
    """Poll states until every task ended; (final states, each task's distinct states in order)."""
    history: dict[int, list[str]] = {i: [] for i in range(n)}
    deadline = time.monotonic() + seconds
    while True:
        states = queue.states(handle)
        for i in range(n):
            state = states.get(i, TaskStatus()).state
            if not history[i] or history[i][-1] != state:
                history[i].append(state)
        if all(states.get(i, TaskStatus()).state in TERMINAL for i in range(n)):
            return dict(states), history
        if time.monotonic() > deadline:
            raise AssertionError(f"tasks still not ended after {seconds:g}s: {history}")
        time.sleep(0.05)


@contextlib.contextmanager
def cancelled_at_exit(queue, handle: str):
    """Cancel the array when the block fails, so its long tasks do not hold the next test's capacity."""
    try:
        yield
    except BaseException:
        queue.cancel(handle)
        raise


def assert_forward_only(history: dict[int, list[str]], retries: bool = False) -> None:
    """States only move forward (PENDING -> RUNNING -> an end), once ended never change; a retry
    may send a task from RUNNING back to PENDING."""
    for task, states in history.items():
        ended = [s for s in states if s in TERMINAL]
        assert len(ended) == 1 and states[-1] == ended[0], f"task {task}: {states}"
        for before, after in zip(states, states[1:]):
            back_to_pending = retries and before == RUNNING and after == PENDING
            assert RANK[after] > RANK[before] or back_to_pending, f"task {task}: {states}"


class BatchQueueContract(BackendFixtures):
    """What every BatchQueue does for the Job: states, retries, timeout, cancel, logs."""

    @pytest.fixture
    def spmd_task_image(self, spmd_backend, spmd_knot) -> str:
        if not type(spmd_backend).uses_images:
            return ""
        return spmd_knot(square).ensure_image().reference

    @pytest.fixture
    def spmd_submit(self, spmd_backend, spmd_task_image):
        """``spmd_submit(plan, **resources)`` -> handle of an array running SCRIPT."""
        def submit(plan: list[str], resources: Resources | None = None) -> str:
            spec = ArraySpec(job_id=layout.new_job_id("conformance-queue"), image=spmd_task_image,
                             command=("python3", "-c", SCRIPT), n_tasks=len(plan),
                             resources=resources or Resources(),
                             env={"SPMD_CONFORMANCE_PLAN": ",".join(plan)})
            handle = spmd_backend.queue.submit(spec)
            assert isinstance(handle, str) and handle
            return handle
        return submit

    def test_queue_runs_an_array_and_reports_each_task(self, spmd_backend, spmd_submit,
                                                       spmd_fresh_backend):
        queue = spmd_backend.queue
        handle = spmd_submit(["sleep1", "exit3", "ok"])
        states, history = watch(queue, handle, 3)
        assert_forward_only(history)
        assert any(RUNNING in h for h in history.values()), history
        assert [states[i].state for i in range(3)] == [SUCCEEDED, FAILED, SUCCEEDED]
        assert (states[0].attempts, states[0].exit_code, states[0].lost) == (1, 0, None), states
        failed = states[1]
        assert (failed.exit_code, failed.attempts, failed.lost) == (3, 1, "error"), failed
        assert failed.reason, "a failed task says why"
        for i in range(3):
            assert f"conformance task {i} attempt 1" in queue.logs(handle, i)
        assert "conformance task 0 attempt 1 done" in queue.logs(handle, 0)
        assert "task 1" not in queue.logs(handle, 0)
        # Another client finds the array by its handle alone.
        again = spmd_fresh_backend().queue
        assert {i: (s.state, s.attempts) for i, s in again.states(handle).items()} == \
            {i: (s.state, s.attempts) for i, s in states.items()}
        assert again.logs(handle, 1) == queue.logs(handle, 1)

    def test_queue_retries_a_failing_task(self, spmd_backend, spmd_submit):
        queue = spmd_backend.queue
        handle = spmd_submit(["fail-once", "exit3"], Resources(retries=1))
        states, history = watch(queue, handle, 2)
        assert_forward_only(history, retries=True)
        assert (states[0].state, states[0].attempts) == (SUCCEEDED, 2), states
        assert (states[1].state, states[1].attempts, states[1].exit_code) == (FAILED, 2, 3), states
        log = queue.logs(handle, 0)
        assert "conformance task 0 attempt 1" in log and "conformance task 0 attempt 2 done" in log
        assert log.index("attempt 1") < log.index("attempt 2")  # every attempt, in order

    def test_queue_timeout_is_final(self, spmd_backend, spmd_submit):
        queue = spmd_backend.queue
        started = time.monotonic()
        handle = spmd_submit(["sleep120"], Resources(timeout=2, retries=1))
        with cancelled_at_exit(queue, handle):
            states, history = watch(queue, handle, 1)
        assert time.monotonic() - started < 90, "the task was not stopped at its timeout"
        assert_forward_only(history)
        status = states[0]
        assert (status.state, status.lost, status.attempts) == (FAILED, "timeout", 1), status  # no retry
        assert "conformance task 0 attempt 1: sleep120" in queue.logs(handle, 0)

    def test_queue_cancel_stops_running_and_pending(self, spmd_backend, spmd_submit,
                                                    spmd_exclusive, spmd_fresh_backend):
        queue = spmd_backend.queue
        resources = Resources(vcpus=float(spmd_exclusive["vcpus"]),
                              memory=int(spmd_exclusive["memory"]))
        handle = spmd_submit(["sleep120"] * 3, resources)
        with cancelled_at_exit(queue, handle):
            states = wait_for(lambda: (s := queue.states(handle)) and
                              any(t.state == RUNNING for t in s.values()) and s,
                              what="a running task")
            assert any(states.get(i, TaskStatus()).state == PENDING for i in range(3)), \
                "a task asking for the whole capacity did not wait for the running one"
            started = time.monotonic()
            queue.cancel(handle)
            states, history = watch(queue, handle, 3)
        assert time.monotonic() - started < 60, "cancel did not stop the running task"
        assert_forward_only(history)
        assert [states[i].state for i in range(3)] == [CANCELLED] * 3
        assert sorted(s.attempts for s in states.values())[0] == 0, f"a pending task was started: {states}"
        again = spmd_fresh_backend().queue.states(handle)
        assert [again.get(i, TaskStatus()).state for i in range(3)] == [CANCELLED] * 3
