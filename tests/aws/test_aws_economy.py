"""API economy: a map of 25,000 items with chunksize=1, counted with botocore's event hooks,
against the budget per phase that docs/aws.md states. ListJobs is paginated as on AWS
(1,000 per page, the harness), so the counts are those AWS would see.

moto's Batch is told not to run containers here (``batch.use_docker = false``): its
children succeed at once, which is all the counting needs. For the failure path, a hook
in the client process reports every tenth task (2,500) as AWS reports a task whose code
exited 1 (FAILED, "Essential container in task exited", exit code 1, a log stream), so
the counts cover reading their states and their logs; moto cannot fail a task without
containers.
"""
import json
import subprocess
import sys
import textwrap

import pytest

from awsharness import moto_config

pytestmark = pytest.mark.docker  # the client still builds (or finds) the task image

N_ITEMS = 25_000

CLIENT = textwrap.dedent("""
    import collections, json, os, sys, threading, time
    import spmd, spmd_aws.aws

    counts = collections.Counter()

    def count(model, **_):
        if threading.current_thread() is threading.main_thread():  # not the job's watcher
            counts[model.service_model.service_name + "." + model.name] += 1

    spmd_aws.aws.session().events.register("before-call", count)
    config = json.loads(sys.argv[1])
    base_image = config.pop("base_image")
    knot = spmd.Knot(lambda x: x + 1, backend="aws", base_image=base_image, config=config)
    job = knot.map(range(%d), chunksize=1)
    calls = dict(counts)
    queue = job.backend.queue
    watched = len(queue.states(job.handle))  # what each poll reads, for the peak
    # VmHWM: this process's peak resident memory since it started (ru_maxrss would also
    # count the parent's memory at the fork)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

    # Every tenth task fails as AWS reports an exit code 1 (see the module's docstring).
    offsets = {job_id: offset for job_id, offset, _ in json.loads(job.handle)["jobs"]}

    def failing(job_id):
        parent, _, index = job_id.partition(":")
        return bool(index) and (offsets.get(parent, 0) + int(index)) %% 10 == 0

    sizes = {job_id: size for job_id, _, size in json.loads(job.handle)["jobs"]}

    def fail(parsed, **_):
        for record in parsed.get("jobs", parsed.get("jobSummaryList", ())):
            summary = (record.get("arrayProperties") or {}).get("statusSummary")
            if summary and record["jobId"] in sizes:  # the parent counts them FAILED too
                failed = sum(1 for i in range(sizes[record["jobId"]])
                             if failing(f"{record['jobId']}:{i}"))
                moved = min(failed, summary.get("SUCCEEDED", 0))
                summary["SUCCEEDED"] -= moved
                summary["FAILED"] = summary.get("FAILED", 0) + moved
            if failing(record["jobId"]) and record.get("status") == "SUCCEEDED":
                stream = "spmd/default/" + record["jobId"].replace(":", "-")
                record.update(status="FAILED", statusReason="Essential container in task exited",
                              container={"exitCode": 1, "logStreamName": stream},
                              attempts=[{"container": {"exitCode": 1, "logStreamName": stream}}])
    # A queue of its own (its own cache of job records): the job's watcher goes on polling
    # (uncounted) with moto's outputs missing; the phases below are one poll each.
    job._stop.set()
    from spmd_aws.queue import AwsBatchQueue
    queue = AwsBatchQueue(queue.opts, queue.clients)
    while any(s.state != "SUCCEEDED" for s in queue.states(job.handle).values()):
        time.sleep(1)  # moto moves its children on in their own threads
    events = queue.batch.meta.events  # the client exists already: its own hooks
    events.register("after-call.batch.ListJobs", fail)
    events.register("after-call.batch.DescribeJobs", fail)
    phases = {}
    for phase in ("first poll", "next poll"):
        counts.clear()
        states = queue.states(job.handle)
        phases[phase] = dict(counts)
    lost = sorted(t for t, s in states.items() if s.state == "FAILED")
    counts.clear()
    for task in lost:  # what the Job reads for each lost task's error (spmd.client.job._apply)
        queue.log_part(job.handle, task, -64 * 1024)
    phases["errors of the lost tasks"] = dict(counts)
    counts.clear()
    for task in lost:
        queue.logs(job.handle, task)
    phases["logs of the lost tasks"] = dict(counts)
    counts.clear()
    job.report()
    phases["report"] = dict(counts)
    counts.clear()
    again = AwsBatchQueue(queue.opts, queue.clients)  # another process reattaching
    again.states(job.handle)
    phases["reattach"] = dict(counts)
    counts.clear()
    queue.cancel_pending(job.handle)  # what a spent failure budget asks
    phases["budget spent"] = dict(counts)
    counts.clear()
    queue.cancel(job.handle)
    phases["cancel"] = dict(counts)
    print(json.dumps({"calls": calls, "handle": job.handle, "tasks": job.manifest.n_tasks,
                      "watched": watched, "peak_bytes": peak, "phases": phases,
                      "lost": len(lost)}))
    sys.stdout.flush()
    os._exit(0)  # the watcher thread would go on polling
""" % N_ITEMS)


@pytest.fixture
def batch_without_containers(moto_endpoint):
    moto_config(moto_endpoint, batch={"use_docker": False})
    yield
    moto_config(moto_endpoint, batch={"use_docker": True})


def test_25000_items_take_few_requests_and_little_memory(e2e_config, base_image, boto,
                                                         batch_without_containers, calls):
    config = {**e2e_config, "base_image": base_image}
    out = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(config)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    used = result["calls"]
    print("API calls of the client:", json.dumps(used, sort_keys=True))
    print(f"peak memory of the client: {result['peak_bytes'] / 2**20:.0f} MiB")
    assert result["tasks"] == result["watched"] == N_ITEMS
    assert used["batch.SubmitJob"] <= 3
    assert used.get("s3.PutObject", 0) <= 30
    assert result["peak_bytes"] < 300 * 2**20

    # 2,500 failed: described once (100 per request), then read from the cache; their logs
    # one tail request each; cancel one request per array.
    phases = result["phases"]
    print("API calls after the map:", json.dumps(phases, sort_keys=True))
    assert result["lost"] == 2500
    # The budget per phase (docs/aws.md), with ListJobs paginated as AWS does (the harness):
    # a poll reads the arrays' parents (100 per DescribeJobs) and lists only the states
    # whose count moved; a first poll (or a reattach, or the report) lists the ended
    # children once, 1,000 per page, and describes the failed ones, 100 per request.
    sizes = [size for _, _, size in json.loads(result["handle"])["jobs"]]
    failed = [sum(1 for i in range(size) if (offset + i) % 10 == 0)
              for _, offset, size in json.loads(result["handle"])["jobs"]]
    first = {"batch.DescribeJobs": -(-len(sizes) // 100) + sum(-(-f // 100) for f in failed),
             "batch.ListJobs": sum(1 + -(-(s - f) // 1000) + -(-f // 1000)
                                   for s, f in zip(sizes, failed))}
    within(phases["first poll"], first)
    assert phases["next poll"] == {"batch.DescribeJobs": 1}  # nothing moved: no listing
    within(phases["reattach"], first)
    within(phases["report"], {**first, "s3.GetObject": 1, "s3.ListObjectsV2": 1})
    # a lost task's error shows its log's tail for the first TAILS_READ of the job; the
    # others say how to read it, and job.logs(i) reads each one asked for
    from spmd_aws.queue import TAILS_READ
    assert phases["errors of the lost tasks"] == {"logs.GetLogEvents": TAILS_READ}
    assert phases["logs of the lost tasks"] == {"logs.GetLogEvents": 2500}  # one tail each
    assert phases["cancel"] == {"batch.TerminateJob": len(sizes)}
    # CancelJob on each parent (this queue has no store: a map's also puts one marker)
    assert phases["budget spent"] == {"batch.CancelJob": len(sizes)}

    # Three arrays of at most 10,000 children cover the 25,000 tasks, each offset once.
    jobs = json.loads(result["handle"])["jobs"]
    assert [size for _, _, size in jobs] == [8334, 8333, 8333]
    assert [offset for _, offset, _ in jobs] == [0, 8334, 16667]
    parents = boto("batch").describe_jobs(jobs=[job_id for job_id, _, _ in jobs])["jobs"]
    assert sorted(p["arrayProperties"]["size"] for p in parents) == [8333, 8333, 8334]

    # Reading every task's state lists each array's children per status, page by page.
    from spmd.config import resolve
    from spmd_aws.backend import AwsBackend
    backend = AwsBackend(resolve({**e2e_config, "backend": "aws"}))
    calls.calls.clear()
    states = backend.queue.states(result["handle"])
    assert len(states) == N_ITEMS and {s.state for s in states.values()} == {"SUCCEEDED"}
    # a first look at an all-succeeded job: its parents, then each array's SUCCEEDED pages
    assert calls.count("batch", "DescribeJobs") == 1
    assert calls.count("batch", "ListJobs") == sum(-(-size // 1000) for size in sizes)


def within(used: dict, budget: dict) -> None:
    """Every operation of a phase within its budget, and none outside it."""
    assert set(used) <= set(budget), (used, budget)
    assert all(used[op] <= budget[op] for op in used), (used, budget)
