"""Job and its futures on the in-memory backend (spmd.testing.memory): no Docker, milliseconds."""
import subprocess
import sys
import time

import numpy as np
import pytest

import spmd
import spmd.testing
from spmd.testing import functions, memory
from spmd.testing.memory import Fault

WAIT = 30


def test_values_in_input_order_across_chunks(knot):
    job = knot(functions.square).map(range(23), chunksize=4)
    assert job.results(timeout=WAIT) == [x * x for x in range(23)]
    assert job.status()["SUCCEEDED"] == 6


def test_remote_errors_fail_only_their_items(knot):
    job = knot(functions.fragile).map(range(7), chunksize=7)
    assert job.futures[0].result(timeout=WAIT) == 0 and job.futures[6].result() == 60
    with pytest.raises(functions.SubjectError, match="no b0 volume") as info:
        job.futures[3].result()
    assert "fragile" in str(info.value.__cause__)  # the remote traceback
    assert isinstance(job.futures[5].exception(), ValueError)


def test_arrays_come_back_writable_and_equal(knot):
    def scaled(a):
        a *= 2  # inputs are writable, as with an in-band pickle
        return a

    arrays = [np.arange(100_000, dtype=np.float64) + i for i in range(3)]
    results = knot(scaled).map(arrays).results(timeout=WAIT)
    for i, result in enumerate(results):
        assert result.flags.writeable and np.array_equal(result, (np.arange(100_000) + i) * 2)


@pytest.mark.parametrize("lost,error", [("oom", spmd.TaskOutOfMemory),
                                        ("timeout", spmd.TaskTimedOut),
                                        ("error", spmd.TaskLost)])
def test_task_ended_without_output_raises_with_reason_and_log_tail(knot, lost, error):
    k = knot(functions.square)
    k.backend.queue.faults[1] = {1: Fault(lost, f"reason {lost}", log="line 1\nlast words\n",
                                          exit_code=137)}
    job = k.map(range(4), chunksize=2)
    assert job.futures[0].result(timeout=WAIT) == 0
    for index in (2, 3):
        exc = job.futures[index].exception(timeout=WAIT)
        assert type(exc) is error
        assert exc.reason == f"reason {lost}" and exc.exit_code == 137 and exc.task == 1
        # the attempt's own log, then the scheduler core's note of a task stopped for its memory
        note = f"\nspmd: the task was stopped: reason {lost}" if lost == "oom" else ""
        assert exc.log_tail.endswith("last words" + note)


def test_timeout_is_not_retried_but_oom_is(knot):
    k = knot(functions.square, retries=1)
    k.backend.queue.faults.update({0: {1: Fault("timeout", "timed out after 1s")},
                                   1: {1: Fault("oom", "out of memory")}})
    job = k.map([2, 3], chunksize=1)
    assert isinstance(job.futures[0].exception(timeout=WAIT), spmd.TaskTimedOut)
    assert job.futures[1].result(timeout=WAIT) == 9
    assert job.provenance(1)["attempt"] == 2


def test_infrastructure_losses_have_their_own_budget(knot):
    k = knot(functions.square, retries=0, infra_retries=2)
    lost = Fault("infrastructure", "the Docker engine restarted")
    k.backend.queue.faults.update({0: {1: lost, 2: lost}, 1: {1: lost, 2: lost, 3: lost}})
    job = k.map([4, 5], chunksize=1)
    assert job.futures[0].result(timeout=WAIT) == 16  # two losses, then ran (retries=0)
    exc = job.futures[1].exception(timeout=WAIT)
    assert type(exc) is spmd.TaskLost and "Docker engine restarted" in str(exc)


def test_an_error_after_an_infrastructure_loss_still_gets_its_retry(knot, tmp_path):
    # Attempt 1 lost to infrastructure, attempt 2 a user error, attempt 3 (retries=1) succeeds:
    # attempt 2's output must not be taken as final, or the future ends with its error.
    record = tmp_path / "calls"

    def fails_first_time(x):
        with open(record, "a") as handle:
            handle.write("call\n")
        if record.read_text().count("call") == 1:
            raise RuntimeError("first call fails")
        import time
        time.sleep(1)  # the client polls meanwhile and sees attempt 2's output
        return x

    k = knot(fails_first_time, retries=1, infra_retries=1)
    k.backend.queue.faults.update({0: {1: Fault("infrastructure", "host lost")}})
    job = k.map([7], chunksize=1)
    assert job.results(timeout=WAIT) == [7]
    assert record.read_text().count("call") == 2


def test_retry_keeps_the_values_of_calls_that_succeeded(knot, tmp_path):
    record = tmp_path / "calls"

    def once_per_value(x):  # travels pickled: it records its calls in a file
        with open(record, "a") as handle:
            handle.write(f"{x}\n")
        if x == 1 and record.read_text().split().count("1") == 1:
            raise RuntimeError("first time fails")
        return x

    job = knot(once_per_value, retries=1).map([0, 1, 2], chunksize=3)
    assert job.results(timeout=WAIT) == [0, 1, 2]
    assert sorted(record.read_text().split()) == ["0", "1", "1", "2"]  # 0 and 2 ran once


def test_cancel_before_start_cancels_every_future(knot):
    k = knot(functions.square)
    k.backend.queue.hold()
    job = k.map(range(6), chunksize=2)
    job.cancel()
    k.backend.queue.release()
    job.wait(timeout=WAIT)
    assert all(f.cancelled() for f in job.futures)
    assert job.status()["CANCELLED"] == 3


def test_attach_sees_the_same_results_and_provenance(knot):
    k = knot(functions.square)
    job = k.map([3, 4])
    job.results(timeout=WAIT)
    again = spmd.attach(job.id, backend="memory", config={"memory_store": k.settings.get("memory_store")})
    assert again.results(timeout=WAIT) == [9, 16]
    prov = again.provenance(1)
    assert prov["attempt"] == 1 and prov["ended"] >= prov["started"]


def test_watcher_lists_outputs_after_the_resolved_ones(knot):
    k = knot(functions.square)
    seen = []
    original = k.backend.store.list_after

    def recording(prefix, start_after=""):
        seen.append(start_after)
        return original(prefix, start_after)

    k.backend.store.list_after = recording
    k.backend.queue.hold()
    job = k.map(range(4), chunksize=1)
    k.backend.queue.release()
    assert job.results(timeout=WAIT) == [0, 1, 4, 9]
    assert seen[0] == ""
    assert all(s == "" or s.startswith(f"jobs/{job.id}/output/") for s in seen)
    assert seen == sorted(seen)  # the listing only moves forward


def test_memory_backend_is_not_offered_unless_registered():
    code = "from spmd import plugins; print(plugins.backend_names())"
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert "'local'" in names and "memory" not in names


class TestMemoryStore(spmd.testing.ObjectStoreContract):
    """The memory store keeps the store contract, so tests built on it test the real thing."""

    @pytest.fixture
    def spmd_backend_name(self):
        memory.register()
        return "memory"

    @pytest.fixture
    def spmd_backend_config(self, request):
        name = f"contract-{request.node.name}"
        yield {"memory_store": name}
        memory.forget(name)


def test_worker_reads_manifest_and_function_once_per_process(knot):
    k = knot(functions.square)
    store = k.backend.store
    reads = []
    get = store.get

    def counting_get(key, start=None, end=None):  # the memory store's get_view calls get
        reads.append(key.rsplit("/", 1)[1])
        return get(key, start, end)

    store.get = counting_get
    job = k.map(range(6), chunksize=1)
    assert job.results(timeout=WAIT) == [x * x for x in range(6)]
    # Six tasks ran in this process; load_job read the job's manifest and function once.
    assert reads.count("manifest.json") == 1 and reads.count("function.pkl") == 1
    assert reads.count("00000.bin") == 12  # each task: its index entry, then its payload


def test_rerun_with_reuse_runs_only_the_failed_items(knot):
    first = knot(functions.fragile).map([0, 1, 2, 3, 4, 5, 6, 3], chunksize=3, reuse=True)
    assert first.wait(WAIT) and type(first.futures[3].exception()) is functions.SubjectError
    again = knot(functions.fragile).map([0, 1, 2, 3, 4, 5, 6, 3], chunksize=3, reuse=True)
    assert again.manifest.reuse_key == first.manifest.reuse_key
    assert again.manifest.items == [3, 5, 7]  # items 3 and 7 are equal: both run again
    assert [again.futures[i].result(timeout=WAIT) for i in (0, 1, 2, 4, 6)] == [0, 10, 20, 40, 60]
    assert type(again.futures[7].exception(timeout=WAIT)) is functions.SubjectError
    assert [r.task for r in again.report()] == [-1, -1, -1, 0, -1, 0, -1, 0]
    other = knot(functions.square).map([0, 1, 2, 3, 4, 5, 6, 3], chunksize=3, reuse=True)
    assert other.manifest.items is None and other.results(timeout=WAIT)[3] == 9


def test_rerun_of_a_running_job_attaches_and_submits_nothing(knot):
    k = knot(functions.square)
    k.backend.queue.hold()
    try:
        first = k.map(range(4), reuse=True)
        again = k.map(range(4), reuse=True)
        assert again.id == first.id
        assert k.map(range(5), reuse=True).id != first.id  # other items: a job of its own
    finally:
        k.backend.queue.release()
    assert again.results(timeout=WAIT) == [0, 1, 4, 9]


def test_the_watcher_checks_soon_after_submit_then_backs_off(knot, monkeypatch):
    # A backend with a fast pace is checked at it after submit, doubling while nothing moves,
    # so a first result is seen long before the configured interval (30 s here) comes round.
    monkeypatch.setattr(memory.MemoryBackend, "poll_fast", 0.01)
    name = knot(functions.square).settings.get("memory_store")
    k = spmd.Knot(functions.square, backend="memory",
                  config={"memory_store": name, "poll_interval": 30})
    k.backend.queue.hold()
    job = k.map([3])
    for _ in range(1000):  # bounded: the watcher checks again within 30 s only at its fast pace
        if job._polls >= 3:
            break
        time.sleep(0.01)
    assert job._polls >= 3
    k.backend.queue.release()
    assert job.results(timeout=10) == [9]
    assert [job._pause(q) for q in (0, 1, 2, 20)] == [0.01, 0.02, 0.04, 30]


def test_a_backend_without_a_fast_pace_is_checked_at_its_interval(knot):
    k = knot(functions.square)
    job = k.map([2])
    assert job.results(timeout=WAIT) == [4]
    assert {job._pause(q) for q in (0, 1, 5)} == {k.backend.poll_interval}


def test_while_results_flow_and_tasks_wait_the_watcher_slows_down(knot, monkeypatch):
    # Fast checks are for the first results and the job's tail; in between, results flow
    # and each check at the configured interval gathers several.
    from spmd.batch_queue import PENDING, RUNNING, SUCCEEDED, TaskStatus
    from spmd.client.job import FLOWING
    monkeypatch.setattr(memory.MemoryBackend, "poll_fast", 0.01)
    job = knot(functions.square).map([1, 2, 3], chunksize=1)
    assert job.results(timeout=WAIT) == [1, 4, 9]
    job._states = {0: TaskStatus(SUCCEEDED), 1: TaskStatus(RUNNING), 2: TaskStatus(PENDING)}
    assert not job._eager()
    assert job._quiet_after(True, 6) == FLOWING  # results flow: a few checks a second
    assert job._quiet_after(False, 6) == 7  # nothing moved: slower
    job._states[2] = TaskStatus(RUNNING)  # nothing waits to start: the tail
    assert job._eager() and job._quiet_after(True, 6) == 0
    job._resolved.clear()  # no result yet: right after submit
    job._states[2] = TaskStatus(PENDING)
    assert job._eager()
