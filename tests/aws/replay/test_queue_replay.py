"""The queue, store and logs against replayed AWS responses moto cannot produce.

Each test drives spmd_aws's own code (AwsBatchQueue, S3Store) on its own clients, with
botocore's Stubber answering in AWS's shapes (see canned.py for the docs each comes from).
Requests are validated against botocore's service model as they are sent.
"""
import types

import pytest

from spmd.batch_queue import ArraySpec, Resources
from spmd.errors import StoreError, TaskLost
from spmd_aws.aws import AwsError
from spmd_aws.config import AwsSettings
from spmd_aws.provision import Deployment
from spmd_aws.queue import AwsBatchQueue, encode_handle
from spmd_aws.reasons import UNPLACED_REASON
from spmd_aws.store import S3Store

from .canned import signing_secret
from .canned import (
    CANCELLED_BY_QUEUE, DEFINITION_ARN, DELETE_DENIED, MISCONFIGURED, PULL_FAILED, QUEUE_ARN,
    ROLE_ARN, START_FAILED, Replay, batch_action, detail, summary,
)

STATUSES = ("RUNNING", "SUCCEEDED", "FAILED")  # what states() lists, in this order



@pytest.fixture
def queue(clients):
    opts = AwsSettings(bucket="lab-data")
    q = AwsBatchQueue(opts, clients)
    q._deployment = Deployment(QUEUE_ARN, ROLE_ARN)  # provisioning is tested elsewhere
    return q


def full_pages(replay, parent: str, status: str, indices: list[int]) -> None:
    """ListJobs of one state of an array, as AWS pages it: 1,000 children a page."""
    for start in range(0, max(len(indices), 1), 1000):
        page = {"jobSummaryList": [summary(f"{parent}:{i}", status)
                                   for i in indices[start:start + 1000]]}
        if start + 1000 < len(indices):
            page["nextToken"] = str(start + 1000)
        replay.add("batch", "list_jobs", page)


def list_pages(replay, parent, listed: dict, size: int = 2, known: dict | None = None):
    """What states() reads of one array: DescribeJobs of its parent, whose
    arrayProperties.statusSummary ("ArrayPropertiesDetail", AWS Batch API Reference) counts
    its children per state (those not listed RUNNABLE), then one ListJobs page for each
    status in STATUSES whose count differs from the children already ``known``."""
    counts = {status: len(listed.get(status, [])) for status in STATUSES}
    summary = {**dict.fromkeys(("SUBMITTED", "PENDING", "STARTING"), 0), **counts,
               "RUNNABLE": size - sum(counts.values())}
    replay.add("batch", "describe_jobs", {"jobs": [detail(
        parent, "PENDING", arrayProperties={"statusSummary": summary, "size": size})]},
        {"jobs": [parent]})
    for status in STATUSES:
        if counts[status] != (known or {}).get(status, 0):
            replay.add("batch", "list_jobs", {"jobSummaryList": listed.get(status, [])},
                       {"arrayJobId": parent, "jobStatus": status, "maxResults": 1000})


def lost_future(queue, handle, task, status):
    """What the client's Job makes of a task that ended without output."""
    from spmd.client.job import Job
    manifest = types.SimpleNamespace(job_id="j-1", n_items=2, n_tasks=2, reused=None, chained=False,
                                     items_of=lambda t: [t], task_of=lambda i: i)
    backend = types.SimpleNamespace(queue=queue, settings={}, poll_interval=1, poll_fast=None)
    job = Job(backend, manifest, handle, watch=False)
    from spmd import protocol
    for resolution in protocol.resolve([task], {}, {task: status}, set()).resolutions:
        job._apply(resolution)
    return job.futures[task]


def test_a_pull_failure_is_a_lost_task_retried_by_batch_not_a_cancel(queue, clients):
    spec = ArraySpec("j-1", "reg/spmd-tasks:abc", ("python3", "-m", "spmd.task.worker"), 2,
                     Resources(retries=0, infra_retries=3))
    with Replay(clients) as replay:
        # DescribeJobDefinitions / RegisterJobDefinition / SubmitJob (AWS Batch API Reference)
        replay.add("batch", "describe_job_definitions", {"jobDefinitions": []})
        replay.add("batch", "register_job_definition", {
            "jobDefinitionName": "spmd-0123456789abcdef", "jobDefinitionArn": DEFINITION_ARN,
            "revision": 1})
        signing_secret(replay)
        replay.add("batch", "submit_job", {"jobName": "j-1-0", "jobId": "p1"})
        handle = queue.submit(spec)
        # The second child failed its 4 attempts (1 + infra_retries): never pulled. AWS's
        # shape on EC2: statusReason "Task failed to start", the cause in container.reason.
        failed = summary("p1:1", "FAILED", statusReason=START_FAILED,
                         container={"reason": PULL_FAILED})
        list_pages(replay, "p1", {"SUCCEEDED": [summary("p1:0", "SUCCEEDED")], "FAILED": [failed]})
        replay.add("batch", "describe_jobs", {"jobs": [detail(
            "p1:1", "FAILED", statusReason=START_FAILED,
            attempts=[{"container": {"reason": PULL_FAILED}, "statusReason": START_FAILED}] * 4,
            container={"reason": PULL_FAILED})]}, {"jobs": ["p1:1"]})
        states = queue.states(handle)
        future = lost_future(queue, handle, 1, states[1])  # its log: from the cached record

    [definition] = [p for _, op, p in replay.requests if op == "RegisterJobDefinition"]
    strategy = definition["retryStrategy"]
    assert strategy["attempts"] == 4  # retries + 1 + infra_retries
    # Batch retries that attempt (infra_retries applies) and ends the user's own errors
    pulled = {"statusReason": START_FAILED, "container": {"reason": PULL_FAILED}}
    assert batch_action(strategy, pulled) == "RETRY"
    assert batch_action(strategy, {"statusReason": "Essential container in task exited",
                                   "container": {"exitCode": 1}}) == "EXIT"
    status = states[1]
    assert (status.state, status.lost, status.attempts) == ("FAILED", "infrastructure", 4)
    assert status.reason.startswith("image could not be pulled/started: check")
    assert states[0].state == "SUCCEEDED"
    assert not future.cancelled()
    error = future.exception()
    assert isinstance(error, TaskLost) and "CannotPullContainerError" in str(error)
    # the parent's (its statusSummary) and the failed child's; its log: not read yet
    assert replay.count("DescribeJobs") == 2 and replay.count("GetLogEvents") == 0


def test_a_runnable_misconfiguration_is_reported_and_then_ends_with_its_reason(queue, clients):
    handle = encode_handle([("p2", 0, 3)])
    with Replay(clients) as replay:
        # Poll 1: no child has run; one RUNNABLE child tells why the queue is blocked.
        list_pages(replay, "p2", {}, size=3)
        replay.add("batch", "list_jobs", {"jobSummaryList": [
            summary("p2:0", "RUNNABLE", statusReason=MISCONFIGURED)]},
            {"arrayJobId": "p2", "jobStatus": "RUNNABLE", "maxResults": 1})
        waiting = queue.states(handle)
        # Poll 2: jobStateTimeLimitActions cancelled the three after maxTimeSeconds.
        ended = [summary(f"p2:{i}", "FAILED", statusReason=CANCELLED_BY_QUEUE) for i in range(3)]
        list_pages(replay, "p2", {"FAILED": ended}, size=3)
        replay.add("batch", "describe_jobs", {"jobs": [
            detail(f"p2:{i}", "FAILED", statusReason=CANCELLED_BY_QUEUE, attempts=[])
            for i in range(3)]}, {"jobs": ["p2:0", "p2:1", "p2:2"]})
        final = queue.states(handle)

    assert [waiting[t].state for t in range(3)] == ["PENDING"] * 3
    assert {waiting[t].reason for t in range(3)} == {MISCONFIGURED}
    assert [final[t].state for t in range(3)] == ["FAILED"] * 3  # an error, not a cancel
    assert {final[t].lost for t in range(3)} == {"error"}
    assert CANCELLED_BY_QUEUE in final[0].reason and "vCPU/memory/GPU" in final[0].reason
    assert "never placed" in final[0].reason


def test_spmd_status_prints_why_tasks_wait(queue, clients, capsys, monkeypatch):
    from spmd.cli import jobs as cli
    handle = encode_handle([("p3", 0, 2)])
    job = _JobView(handle, queue)
    monkeypatch.setattr(cli, "open_job", lambda args: job)
    with Replay(clients) as replay:
        list_pages(replay, "p3", {})
        replay.add("batch", "list_jobs", {"jobSummaryList": [
            summary("p3:0", "RUNNABLE", statusReason=MISCONFIGURED)]},
            {"arrayJobId": "p3", "jobStatus": "RUNNABLE", "maxResults": 1})
        cli.cmd_status(types.SimpleNamespace(job_id="j-3"))
    assert f"waiting: {MISCONFIGURED}" in capsys.readouterr().out


class _JobView:
    """What cmd_status reads of a Job: its counts (as job.status() gave them) and its queue."""

    id = "j-3"
    manifest = types.SimpleNamespace(n_tasks=2, backend="aws")

    def __init__(self, handle, queue):
        self.handle = handle
        self.backend = types.SimpleNamespace(queue=queue)

    def __len__(self):
        return 2

    def status(self):
        return {"PENDING": 2, "RUNNING": 0, "SUCCEEDED": 0, "FAILED": 0, "CANCELLED": 0}


def test_logs_of_lost_tasks_read_the_cached_record_and_only_the_tail(queue, clients):
    handle = encode_handle([("p4", 0, 2)])
    # ContainerDetail.logConfiguration (AWS Batch API Reference): the job definition's
    awslogs = {"logDriver": "awslogs", "options": {"awslogs-group": "/spmd/spmd/tasks"}}
    crashed = detail("p4:1", "FAILED", statusReason="Essential container in task exited",
                     container={"exitCode": 1, "logStreamName": "spmd/default/b",
                                "logConfiguration": awslogs},
                     attempts=[{"container": {"exitCode": 1, "logStreamName": "spmd/default/b"}}])
    with Replay(clients) as replay:
        list_pages(replay, "p4", {"FAILED": [summary("p4:1", "FAILED")],
                                  "SUCCEEDED": [summary("p4:0", "SUCCEEDED")]})
        replay.add("batch", "describe_jobs", {"jobs": [crashed]}, {"jobs": ["p4:1"]})
        queue.states(handle)
        # GetLogEvents (CloudWatch Logs API Reference): startFromHead=false gives the newest page
        replay.add("logs", "get_log_events", {
            "events": [{"timestamp": 1, "message": "Traceback ...", "ingestionTime": 2},
                       {"timestamp": 3, "message": "ValueError: bad", "ingestionTime": 4}],
            "nextForwardToken": "f/1", "nextBackwardToken": "b/1"},
            {"logGroupName": "/spmd/spmd/tasks", "logStreamName": "spmd/default/b",
             "startFromHead": False})
        text = queue.logs(handle, 1)
    assert text == "Traceback ...\nValueError: bad\n"
    assert replay.count("DescribeJobs") == 2  # the two states() made; logs() asked none


def test_cancel_terminates_each_array_parent_only(queue, clients):
    handle = encode_handle([("pa", 0, 8334), ("pb", 8334, 8333), ("pc", 16667, 8333)])
    with Replay(clients) as replay:
        for parent in ("pa", "pb", "pc"):  # TerminateJob (AWS Batch API Reference): {}
            replay.add("batch", "terminate_job", {},
                       {"jobId": parent, "reason": "spmd: cancelled by the user"})
        queue.cancel(handle)
    assert [op for _, op, _ in replay.requests] == ["TerminateJob"] * 3


def test_per_key_delete_errors_are_reported(clients):
    store = S3Store("lab-data", "spmd", clients=clients)
    keys = [f"spmd/jobs/j/output/{i:06d}.pkl" for i in range(3)]
    with Replay(clients) as replay:
        # ListObjectsV2 (Amazon S3 API Reference)
        replay.add("s3", "list_objects_v2", {"Contents": [{"Key": k, "Size": 1} for k in keys],
                                             "IsTruncated": False, "KeyCount": 3})
        replay.add("s3", "delete_objects", {"Deleted": [{"Key": keys[0]}],
                                            "Errors": [{"Key": k, **DELETE_DENIED} for k in keys[1:]]})
        with pytest.raises(StoreError) as info:
            store.delete_prefix("jobs/j/")
    message = str(info.value)
    assert "2 of 3 objects were not deleted" in message and keys[1] in message
    assert "AccessDenied" in message and "s3:DeleteObject" in message


def test_the_layer_fails_on_a_field_name_aws_does_not_know(queue, clients, monkeypatch):
    def misspelled(parent):
        return queue.batch.list_jobs(arrayJobId=parent, jobStatus="RUNNABLE", maxResult=1)
    monkeypatch.setattr(queue, "_why_waiting", misspelled)
    with Replay(clients) as replay:
        list_pages(replay, "p5", {})
        replay.add("batch", "list_jobs", {"jobSummaryList": []})
        with pytest.raises(AwsError, match='Unknown parameter in input: "maxResult"'):
            queue.states(encode_handle([("p5", 0, 2)]))
        # the same request with AWS's field name takes the response the wrong one could not
        clients("batch").list_jobs(arrayJobId="p5", jobStatus="RUNNABLE", maxResults=1)


def test_an_unplaceable_array_ends_at_the_first_child_the_queue_cancels(queue, clients):
    # "JobStateTimeLimitAction" (AWS Batch API Reference): the action applies to the job at
    # the head of the queue, one at a time; the rest of the array would wait its turn.
    handle = encode_handle([("p5", 0, 4)])
    with Replay(clients) as replay:
        first = summary("p5:0", "FAILED", statusReason=CANCELLED_BY_QUEUE)
        list_pages(replay, "p5", {"FAILED": [first]}, size=4)
        replay.add("batch", "describe_jobs", {"jobs": [
            detail("p5:0", "FAILED", statusReason=CANCELLED_BY_QUEUE, attempts=[])]},
            {"jobs": ["p5:0"]})
        replay.add("batch", "terminate_job", {}, {
            "jobId": "p5", "reason": f"{UNPLACED_REASON}: {CANCELLED_BY_QUEUE}"})
        states = queue.states(handle)
        # Batch then lists the others FAILED with spmd's reason: still never placed, no
        # second TerminateJob (another process reattaching reads the same)
        ended = [summary(f"p5:{i}", "FAILED", statusReason=f"{UNPLACED_REASON}: "
                         f"{CANCELLED_BY_QUEUE}") for i in range(1, 4)]
        list_pages(replay, "p5", {"FAILED": [first, *ended]}, size=4, known={"FAILED": 1})
        replay.add("batch", "describe_jobs", {"jobs": [
            detail(f"p5:{i}", "FAILED", statusReason=f"{UNPLACED_REASON}: {CANCELLED_BY_QUEUE}",
                   attempts=[]) for i in range(1, 4)]}, {"jobs": ["p5:1", "p5:2", "p5:3"]})
        later = queue.states(handle)

    assert replay.count("TerminateJob") == 1
    for polled in (states, later):
        assert [polled[t].state for t in range(4)] == ["FAILED"] * 4
        assert all(polled[t].reason.startswith("never placed") and CANCELLED_BY_QUEUE in
                   polled[t].reason and polled[t].lost == "error" for t in range(4))


def test_a_poll_where_nothing_moved_lists_no_children(queue, clients):
    # a poll costs one DescribeJobs per 100 arrays, plus ListJobs only for states whose
    # count moved: reading the same 25,000 children every 3 s is what made polling grow
    handle = encode_handle([("p6", 0, 2)])
    done = {"SUCCEEDED": [summary("p6:0", "SUCCEEDED"), summary("p6:1", "SUCCEEDED")]}
    with Replay(clients) as replay:
        list_pages(replay, "p6", done)
        first = queue.states(handle)
        list_pages(replay, "p6", done, known={"SUCCEEDED": 2})
        again = queue.states(handle)
    assert first == again and {s.state for s in again.values()} == {"SUCCEEDED"}
    assert replay.count("ListJobs") == 1 and replay.count("DescribeJobs") == 2


def test_a_lost_tasks_tail_is_one_limited_request_for_its_last_attempt(queue, clients,
                                                                      monkeypatch):
    # what the client shows in a lost task's error: its last attempt's last events only
    # (GetLogEvents "limit", CloudWatch Logs API Reference), not every attempt's newest MB
    handle = encode_handle([("p7", 0, 2)])
    attempts = [{"container": {"exitCode": 1, "logStreamName": f"spmd/default/{n}"}}
                for n in ("a", "b", "c")]
    crashed = detail("p7:1", "FAILED", statusReason="Essential container in task exited",
                     container={"exitCode": 1, "logStreamName": "spmd/default/c"},
                     attempts=attempts)
    with Replay(clients) as replay:
        list_pages(replay, "p7", {"FAILED": [summary("p7:1", "FAILED")],
                                  "SUCCEEDED": [summary("p7:0", "SUCCEEDED")]})
        replay.add("batch", "describe_jobs", {"jobs": [crashed]}, {"jobs": ["p7:1"]})
        queue.states(handle)
        replay.add("logs", "get_log_events", {
            "events": [{"timestamp": 3, "message": "ValueError: bad", "ingestionTime": 4}],
            "nextForwardToken": "f/1", "nextBackwardToken": "b/1"},
            {"logGroupName": "/aws/batch/job", "logStreamName": "spmd/default/c",
             "startFromHead": False, "limit": 100})
        data, _ = queue.log_part(handle, 1, -64 * 1024)
        # past TAILS_READ tails of a job (2,500 lost tasks would be 2,500 requests), an
        # error says how to read its log instead, and job.logs() still reads it when asked
        import spmd_aws.queue
        monkeypatch.setattr(spmd_aws.queue, "TAILS_READ", 1)
        pointer, _ = queue.log_part(handle, 1, -64 * 1024)
    assert data == b"ValueError: bad\n"
    assert replay.count("GetLogEvents") == 1 and replay.count("DescribeJobs") == 2
    assert b"was not read here" in pointer and b"job.logs(item)" in pointer


def test_100000_items_poll_within_the_budget(queue, clients):
    # 100,000 tasks in 10 arrays of 10,000, polling simulated with AWS's shapes and page
    # sizes (ListJobs: 1,000 per page; DescribeJobs: 100 ids): the budget of docs/aws.md
    parents = [f"q{a}" for a in range(10)]
    handle = encode_handle([(p, a * 10_000, 10_000) for a, p in enumerate(parents)])

    def described(counts: dict) -> dict:
        return {"jobs": [detail(p, "PENDING", arrayProperties={"statusSummary": {
            **dict.fromkeys(("SUBMITTED", "PENDING", "STARTING", "RUNNABLE", "RUNNING",
                             "SUCCEEDED", "FAILED"), 0), **counts}, "size": 10_000})
            for p in parents]}

    with Replay(clients) as replay:
        # every child ended: 9,000 succeeded and 1,000 failed per array
        replay.add("batch", "describe_jobs", described({"SUCCEEDED": 9000, "FAILED": 1000}))
        for parent in parents:
            full_pages(replay, parent, "SUCCEEDED", [i for i in range(10_000) if i % 10])
            full_pages(replay, parent, "FAILED", list(range(0, 10_000, 10)))
            for start in range(0, 10_000, 1000):
                replay.add("batch", "describe_jobs", {"jobs": [detail(
                    f"{parent}:{i}", "FAILED", statusReason="Essential container in task exited",
                    container={"exitCode": 1}) for i in range(start, start + 1000, 10)]})
        first = queue.states(handle)
        ending = {op: replay.count(op) for op in ("DescribeJobs", "ListJobs")}
        replay.add("batch", "describe_jobs", described({"SUCCEEDED": 9000, "FAILED": 1000}))
        again = queue.states(handle)
    assert len(first) == len(again) == 100_000
    assert sum(s.state == "FAILED" for s in again.values()) == 10_000
    # the poll that sees every end: ⌈A/100⌉ + Σ⌈F/100⌉ DescribeJobs, Σ(⌈S/1,000⌉ + ⌈F/1,000⌉)
    assert ending == {"DescribeJobs": 1 + 10 * 10, "ListJobs": 10 * (9 + 1)}
    # a poll where nothing moved: one DescribeJobs, whatever N
    assert replay.count("DescribeJobs") == ending["DescribeJobs"] + 1
    assert replay.count("ListJobs") == ending["ListJobs"]


def test_a_spent_budget_cancels_only_what_has_not_started(queue, clients):
    """CancelJob (never TerminateJob) on each parent: Batch cancels SUBMITTED, PENDING and
    RUNNABLE children and leaves STARTING and RUNNING ones ("CancelJob", AWS Batch API
    Reference); a poll that still counts RUNNABLE children (a retry queued) cancels again."""
    from spmd_aws.reasons import BUDGET_REASON, task_status
    handle = encode_handle([("pa", 0, 2), ("pb", 2, 2)])
    with Replay(clients) as replay:
        for parent in ("pa", "pb"):  # CancelJob (AWS Batch API Reference): {}
            replay.add("batch", "cancel_job", {}, {"jobId": parent, "reason": BUDGET_REASON})
        queue.cancel_pending(handle)
        running = {"jobSummaryList": [summary("pa:0", "RUNNING")]}
        replay.add("batch", "describe_jobs", {"jobs": [
            detail("pa", "PENDING", arrayProperties={"size": 2, "statusSummary": {
                "RUNNING": 1, "RUNNABLE": 1}}),
            detail("pb", "PENDING", arrayProperties={"size": 2, "statusSummary": {
                "FAILED": 2}})]}, {"jobs": ["pa", "pb"]})
        replay.add("batch", "cancel_job", {}, {"jobId": "pa", "reason": BUDGET_REASON})
        replay.add("batch", "list_jobs", running,
                   {"arrayJobId": "pa", "jobStatus": "RUNNING", "maxResults": 1000})
        cancelled = [summary(f"pb:{i}", "FAILED") for i in range(2)]
        replay.add("batch", "list_jobs", {"jobSummaryList": cancelled},
                   {"arrayJobId": "pb", "jobStatus": "FAILED", "maxResults": 1000})
        replay.add("batch", "describe_jobs", {"jobs": [
            detail(f"pb:{i}", "FAILED", statusReason=BUDGET_REASON) for i in range(2)]},
            {"jobs": ["pb:0", "pb:1"]})
        states = queue.states(handle)
    assert [op for _, op, _ in replay.requests].count("TerminateJob") == 0
    assert states[0].state == "RUNNING"  # went on
    assert {states[2].state, states[3].state} == {"CANCELLED"}
    assert "failure budget" in states[2].reason


def test_spmd_status_reads_and_only_the_watcher_submits_a_task_again(queue, clients):
    """memory=[sizes]: states() is read-only (``spmd status``, reports); the task killed for
    memory reads PENDING, and only advance() (the watching Job's poll) submits it again."""
    from spmd.testing.memory import MemoryStore
    from spmd_aws import memory
    class Store(MemoryStore):
        def put_new(self, key, data):  # S3Store's conditional put (If-None-Match: *)
            return not self.exists(key) and (self.put(key, data) or True)
    store = Store("replay-grow")
    queue._store = lambda: store
    spec = ArraySpec("j-9", "reg/spmd-tasks:abc", ("python3", "-m", "spmd.task.worker"), 2,
                     Resources(memory=2**30, more_memory=(2**31,)))
    memory.save_spec(store, spec)
    handle = encode_handle([("pm", 0, 2)], 1, "j-9", "j-9")
    killed = detail("pm:1", "FAILED", statusReason="Essential container in task exited",
                    container={"exitCode": 137, "reason": "OutOfMemoryError: Container killed "
                               "due to memory usage"}, attempts=[{}])
    with Replay(clients) as replay:
        list_pages(replay, "pm", {"FAILED": [summary("pm:1", "FAILED")],
                                  "RUNNING": [summary("pm:0", "RUNNING")]})
        replay.add("batch", "describe_jobs", {"jobs": [killed]}, {"jobs": ["pm:1"]})
        states = queue.states(handle)
        assert "SubmitJob" not in [op for _, op, _ in replay.requests]
        assert states[1].state == "PENDING" and "again with 2.0GiB" in states[1].reason
        assert memory.records(store, "j-9") == {}
        queue.definition_arn = lambda spec: DEFINITION_ARN  # registering is tested elsewhere
        queue.write_key = lambda job_id: "0" * 64
        replay.add("batch", "submit_job", {"jobName": "j-9-t1-m1", "jobId": "g1"})
        queue.advance(handle, states)
    assert [op for _, op, _ in replay.requests].count("SubmitJob") == 1
    assert memory.grown_jobs(store, "j-9", 1) == ["g1"]


def test_a_poll_costs_what_moved_not_the_array(queue, clients):
    """One array of 10,000 (AWS's page sizes): once its first 5,000 children are known, a
    poll where 100 running children ended, 100 others started and 50 ended unseen lists
    only the running page and describes what moved, instead of listing SUCCEEDED from page
    1 (6 pages); children ending out of index order fall back to the listing."""
    handle = encode_handle([("pt", 0, 10_000)])

    def parent(counts: dict) -> None:
        replay.add("batch", "describe_jobs", {"jobs": [detail("pt", "PENDING", arrayProperties={
            "statusSummary": {"RUNNABLE": 10_000 - sum(counts.values()), **counts},
            "size": 10_000})]}, {"jobs": ["pt"]})

    def listed(status: str, indices) -> None:
        full_pages(replay, "pt", status, list(indices))

    def described(status: str, indices) -> None:
        replay.add("batch", "describe_jobs", {"jobs": [detail(f"pt:{i}", status)
                                                       for i in indices]})

    def poll() -> dict:
        # and why children still wait (one ListJobs(RUNNABLE, maxResults=1)): not counted
        replay.add("batch", "list_jobs", {"jobSummaryList": [summary("pt:9999", "RUNNABLE")]},
                   {"arrayJobId": "pt", "jobStatus": "RUNNABLE", "maxResults": 1})
        before = {op: replay.count(op) for op in ("DescribeJobs", "ListJobs")}
        states = queue.states(handle)
        poll.states = states
        return {op: replay.count(op) - n - (op == "ListJobs") for op, n in before.items()}

    with Replay(clients) as replay:
        parent({"SUCCEEDED": 5000, "RUNNING": 100})
        listed("RUNNING", range(5000, 5100))
        listed("SUCCEEDED", range(5000))
        assert poll() == {"DescribeJobs": 1, "ListJobs": 6}
        parent({"SUCCEEDED": 5150, "RUNNING": 100})
        listed("RUNNING", range(5100, 5200))
        described("SUCCEEDED", range(5000, 5100))  # those no longer running: ended
        described("SUCCEEDED", range(5200, 5250))  # the lowest unknown: ended unseen
        assert poll() == {"DescribeJobs": 3, "ListJobs": 1}
        probed = [p["jobs"] for _, op, p in replay.requests if op == "DescribeJobs"][-1]
        assert probed == [f"pt:{i}" for i in range(5200, 5250)]
        assert sum(s.state == "SUCCEEDED" for s in poll.states.values()) == 5150
        # 10 end out of index order: the probe of the lowest unknown misses, SUCCEEDED is listed
        parent({"SUCCEEDED": 5160, "RUNNING": 100})
        listed("RUNNING", range(5100, 5200))
        described("RUNNABLE", range(5250, 5260))
        listed("SUCCEEDED", [*range(5100), *range(5200, 5250), *range(9000, 9010)])
        assert poll() == {"DescribeJobs": 2, "ListJobs": 7}
        assert {t for t, s in poll.states.items() if s.state == "SUCCEEDED"} >= set(range(9000, 9010))
        # from then on this array is listed, not probed
        parent({"SUCCEEDED": 5170, "RUNNING": 100})
        listed("RUNNING", range(5100, 5200))
        listed("SUCCEEDED", [*range(5100), *range(5200, 5250), *range(9000, 9020)])
        assert poll() == {"DescribeJobs": 1, "ListJobs": 7}
