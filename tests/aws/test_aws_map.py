"""map on the AWS backend end to end: moto's Batch runs each task in a real container,
pulling the image from a real registry; job data goes through moto's S3."""
import os
import time

import pytest

import spmd
from spmd.errors import SerializationError, TaskTimedOut

pytestmark = pytest.mark.docker


def square(x):
    return x * x


def check_positive(x):
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x


def fail_on_first_attempt(x):
    attempt = int(os.environ["AWS_BATCH_JOB_ATTEMPT"])
    if attempt == 1:
        raise RuntimeError("flaky on attempt 1")
    return (x, attempt)


def nap(seconds):
    print(f"napping {seconds}s", flush=True)
    time.sleep(seconds)
    return seconds


def hog(megabytes):
    blocks = [bytearray(2**20) for _ in range(megabytes)]
    return len(blocks)


def limits(_):
    """The container's CPU quota (in CPUs) and memory limit (bytes), cgroup v1 or v2."""
    time.sleep(1)  # the harness applies moto's missing limits just after the start
    for cpu, memory in (("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/memory.max"),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        if os.path.exists(cpu):
            quota = open(cpu).read().split()
            period = int(quota[1]) if len(quota) > 1 else int(
                open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
            return int(quota[0]) / period, int(open(memory).read())
    return None


def shout(word):
    print(f"hello from the task: {word}", flush=True)
    return word.upper()


def settled(job, timeout=60):
    """The job's task counts once no task is pending or running (a result can come first)."""
    deadline = time.monotonic() + timeout
    while True:
        status = job.status()
        if status["PENDING"] + status["RUNNING"] == 0 or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def test_results_in_input_order_and_one_image_push(aws_knot, calls, engine):
    knot = aws_knot(square)
    job = knot.map(range(6), chunksize=2)
    assert job.results(timeout=300) == [x * x for x in range(6)]
    assert settled(job) == {"PENDING": 0, "RUNNING": 0, "SUCCEEDED": 3, "FAILED": 0, "CANCELLED": 0}
    assert job.manifest.n_tasks == 3
    # one array job of three children; the image came from the stand-in registry
    submits = [p for s, op, p in calls.calls if op == "SubmitJob"]
    assert len(submits) == 1 and submits[0]["arrayProperties"] == {"size": 3}
    assert job.manifest.image.startswith(f"{calls.registry}/spmd-e2e-tasks:")
    # watching lists output/ and reads each task's output once, never per pending item
    output_gets = [p["Key"] for s, op, p in calls.calls
                   if op == "GetObject" and "/output/" in p["Key"]]
    assert sorted(output_gets) == sorted(set(output_gets)) and len(output_gets) == 3
    assert sum(1 for s, op, _ in calls.calls if op == "ListObjectsV2") >= 1
    assert job.provenance(5)["image"] == job.manifest.image
    # pushed once, untagged here after the push, and pulled back by Batch to run the tasks
    assert calls.pushes.count(job.manifest.image) == 1
    assert engine.images.get(job.manifest.image)

    # The image is in ECR now: a second Knot with the same requirements pushes nothing.
    pushes = len(calls.pushes)
    again = aws_knot(square).map([7])
    assert again.results(timeout=300) == [49]
    assert len(calls.pushes) == pushes
    assert again.manifest.image == job.manifest.image


def test_single_task_is_a_plain_job(aws_knot, calls):
    job = aws_knot(square).map([3, 4], chunksize=2)
    assert job.results(timeout=300) == [9, 16]
    [submit] = [p for s, op, p in calls.calls if op == "SubmitJob"]
    assert "arrayProperties" not in submit
    env = {e["name"]: e["value"] for e in submit["containerOverrides"]["environment"]}
    assert env["SPMD_SINGLE_TASK"] == "1"
    # Batch forbids setting AWS_BATCH*; and no credentials travel: the job role gives them
    assert [name for name in env if name.startswith("AWS_")] == []
    # SPMD_WRITE_KEY: the job's key for signing its writes (spmd_aws.signing), no credential
    assert set(env) == {"SPMD_IMAGE", "SPMD_JOB_ID", "SPMD_SINGLE_TASK", "SPMD_STORE_URL",
                        "SPMD_WRITE_KEY"}


def test_remote_exception_type_message_and_traceback(aws_knot):
    job = aws_knot(check_positive).map([1, -2, 3], chunksize=1)
    assert job.futures[0].result(timeout=300) == 1
    with pytest.raises(ValueError, match="negative input -2") as info:
        job.futures[1].result(timeout=300)
    assert isinstance(info.value.__cause__, spmd.RemoteTraceback)
    assert "check_positive" in str(info.value.__cause__)
    assert job.futures[2].result(timeout=300) == 3
    assert settled(job)["FAILED"] == 1


def test_unpicklable_input_is_rejected_before_anything_is_submitted(aws_knot, calls):
    import threading
    with pytest.raises(SerializationError, match="input item 1"):
        aws_knot(square).map([1, threading.Lock()])
    assert calls.count("batch", "SubmitJob") == 0
    assert calls.count("s3", "PutObject") == 0


def test_retries_run_a_failed_task_again(aws_knot):
    job = aws_knot(fail_on_first_attempt, retries=1).map([5])
    assert job.results(timeout=300) == [(5, 2)]
    assert job.provenance(0)["attempt"] == 2
    assert "flaky on attempt 1" in job.logs(0)


def test_timeout_stops_a_task(aws_knot):
    # 8 s: moto's harness times the whole container, Python's start included (a loaded
    # machine took over 3 s to start one)
    job = aws_knot(nap, timeout=8, retries=1).map([60, 0], chunksize=1)
    assert job.futures[1].result(timeout=300) == 0
    with pytest.raises(TaskTimedOut) as info:
        job.futures[0].result(timeout=300)
    assert "timed out after 8s" in str(info.value)
    assert "napping 60s" in info.value.log_tail
    assert info.value.exit_code == 124


def test_memory_limit_ends_as_out_of_memory(aws_knot):
    job = aws_knot(hog, memory="128MiB").map([600])
    with pytest.raises(spmd.TaskOutOfMemory) as info:
        job.results(timeout=300)
    assert isinstance(info.value, spmd.TaskLost) and "out of memory" in str(info.value)
    assert "OutOfMemoryError" in info.value.reason and info.value.exit_code == 137


def test_tasks_get_their_vcpus_and_memory(aws_knot):
    job = aws_knot(limits, vcpus=2, memory="300MiB").map([0])
    assert job.results(timeout=300) == [(2.0, 300 * 2**20)]


def test_cancel_stops_running_and_pending_tasks(aws_knot, engine):
    job = aws_knot(nap).map([600, 600, 600], chunksize=1)
    deadline = time.monotonic() + 120
    while job.status()["RUNNING"] == 0:
        assert time.monotonic() < deadline, job.status()
        time.sleep(0.5)
    started = time.monotonic()
    job.cancel()
    done, not_done = spmd.wait(job, timeout=120)
    assert not not_done and all(f.cancelled() for f in job.futures)
    assert time.monotonic() - started < 120
    assert settled(job)["CANCELLED"] == 3
    running = [c.name for c in engine.containers.list() if job.id in c.name]
    assert running == []


def test_logs_of_a_task_after_it_ends(aws_knot):
    job = aws_knot(shout).map(["ada", "bob"], chunksize=1)
    assert job.results(timeout=300) == ["ADA", "BOB"]
    assert "hello from the task: bob" in job.logs(1)
    assert "hello from the task: ada" not in job.logs(1)
    attached = spmd.attach(job.id, backend="aws", config=job.backend.settings.values)
    assert attached.results(timeout=60) == ["ADA", "BOB"]
    assert "hello from the task: ada" in attached.logs(0)
