"""The Batch queue's own logic: splitting, handles, job definitions, and reading Batch's states."""
import pytest

from spmd.batch_queue import ArraySpec, Resources
from spmd.errors import ResourceError
from spmd_aws.provision import Deployment
from spmd_aws.queue import (
    CANCEL_REASON, AwsBatchQueue, child_id, content_hash, decode_handle, encode_handle,
    job_definition, latest, merge, resource_requirements, split, task_status,
)

from awsharness import settings_of

EC2 = Deployment("arn:aws:batch:us-east-1:1:job-queue/s-ec2", "arn:aws:iam::1:role/s-job")
FARGATE = Deployment("arn:aws:batch:us-east-1:1:job-queue/s-fargate", "arn:aws:iam::1:role/s-job",
                     "FARGATE", "arn:aws:iam::1:role/s-execution")
COMMAND = ("python3", "-m", "spmd.task.worker")


def spec(**resources) -> ArraySpec:
    return ArraySpec(job_id="j-1", image="reg/repo:abc", command=COMMAND, n_tasks=3,
                     resources=Resources(**resources))


def test_split_keeps_arrays_within_10000_and_balanced():
    assert split(1) == [(0, 1)]
    assert split(10_000) == [(0, 10_000)]
    assert split(10_001) == [(0, 5001), (5001, 5000)]
    assert split(25_000) == [(0, 8334), (8334, 8333), (16667, 8333)]
    assert sum(size for _, size in split(123_457)) == 123_457
    assert all(size <= 10_000 for _, size in split(123_457))


def test_handle_round_trip_and_child_ids():
    handle = encode_handle([("a1", 0, 5), ("b2", 5, 1)])
    assert decode_handle(handle) == [("a1", 0, 5), ("b2", 5, 1)]
    assert child_id("a1", 0, 5, 3) == "a1:3"
    assert child_id("b2", 5, 1, 5) == "b2"
    with pytest.raises(Exception, match="version"):
        decode_handle('{"v": 9, "jobs": []}')


def test_resources_whole_vcpus_on_ec2_and_valid_sizes_on_fargate():
    res = Resources(vcpus=1.5, memory=3 * 2**30)
    assert resource_requirements(res, None, False) == [
        {"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "3072"}]
    assert resource_requirements(Resources(vcpus=0.3, memory=2**30), 1, False)[::2] == [
        {"type": "VCPU", "value": "1"}, {"type": "GPU", "value": "1"}]
    assert resource_requirements(Resources(vcpus=0.3, memory=1500 * 2**20), None, True) == [
        {"type": "VCPU", "value": "0.5"}, {"type": "MEMORY", "value": "2048"}]
    # 1 vCPU holds at most 8 GiB: 10 GiB needs 2 vCPUs
    assert resource_requirements(Resources(vcpus=1, memory=10 * 2**30), None, True)[0]["value"] == "2"
    with pytest.raises(ResourceError, match="Fargate"):
        resource_requirements(Resources(vcpus=32, memory=2**30), None, True)


def test_job_definition_retries_and_timeouts():
    request = job_definition(spec(retries=2, timeout=120), EC2)
    container = request["containerProperties"]
    assert container["command"] == ["python3", "-m", "spmd_aws.task", "--", *COMMAND]
    assert container["jobRoleArn"] == EC2.job_role and container["image"] == "reg/repo:abc"
    # With retries, Batch's one count is retries + 1: the user's code never runs more often
    assert request["retryStrategy"] == {"attempts": 3, "evaluateOnExit": [
        {"onReason": "Cannot*", "action": "RETRY"},
        {"onStatusReason": "Task failed to start*", "action": "RETRY"},
        {"onStatusReason": "ResourceInitializationError*", "action": "RETRY"},
        {"onStatusReason": "Host EC2*", "action": "RETRY"}]}
    assert request["timeout"] == {"attemptDurationSeconds": 120}
    assert request["platformCapabilities"] == ["EC2"]
    assert "environment" not in container  # nothing secret, nothing per job in the definition

    short = job_definition(spec(retries=1, timeout=2.5), EC2)
    assert short["containerProperties"]["command"][:5] == [
        "python3", "-m", "spmd_aws.task", "--timeout", "2.5"]
    assert short["timeout"] == {"attemptDurationSeconds": 63}  # Batch's backstop: at least 60 s
    assert short["retryStrategy"]["attempts"] == 2
    assert short["retryStrategy"]["evaluateOnExit"][-1] == {"onExitCode": "124", "action": "EXIT"}
    # without retries (the default), every end but an infrastructure loss is final, and
    # infrastructure losses have their own budget: 1 + infra_retries attempts
    plain = job_definition(spec(), EC2)["retryStrategy"]
    assert plain["attempts"] == 4 and plain["evaluateOnExit"][-1] == {"onReason": "*", "action": "EXIT"}
    assert len(plain["evaluateOnExit"]) == 5  # Batch's limit
    assert job_definition(spec(infra_retries=0), EC2)["retryStrategy"] == {
        "attempts": 1, "evaluateOnExit": [{"onReason": "*", "action": "EXIT"}]}
    assert job_definition(spec(infra_retries=20), EC2)["retryStrategy"]["attempts"] == 10  # capped

    assert "timeout" not in job_definition(spec(), EC2)
    with pytest.raises(ResourceError, match="at most 9"):
        job_definition(spec(retries=10), EC2)

    fargate = job_definition(spec(), FARGATE)
    assert fargate["platformCapabilities"] == ["FARGATE"]
    assert fargate["containerProperties"]["executionRoleArn"] == FARGATE.execution_role
    assert fargate["containerProperties"]["networkConfiguration"] == {"assignPublicIp": "ENABLED"}
    assert fargate["retryStrategy"]["evaluateOnExit"][3]["onStatusReason"] == "Your Spot Task*"
    # the architecture: Fargate's runtimePlatform; on EC2 the instance types decide
    assert fargate["containerProperties"]["runtimePlatform"] == {
        "operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"}
    arm = job_definition(spec(), FARGATE, architecture="arm64")["containerProperties"]
    assert arm["runtimePlatform"]["cpuArchitecture"] == "ARM64"
    assert "runtimePlatform" not in job_definition(spec(), EC2)["containerProperties"]
    with pytest.raises(ResourceError, match="Fargate has no GPUs"):
        job_definition(spec(), FARGATE, gpus=1)


def test_a_size_with_a_larger_one_after_it_exits_on_out_of_memory():
    # Batch would retry at the same size; spmd_aws.memory submits the task again, larger.
    growing = job_definition(spec(retries=2, memory=2**30, more_memory=(2**31,)), EC2)
    assert growing["retryStrategy"]["evaluateOnExit"][0] == \
        {"onReason": "OutOfMemoryError*", "action": "EXIT"}
    assert growing["containerProperties"]["resourceRequirements"][1]["value"] == "1024"
    last = job_definition(spec(retries=2, memory=2**31), EC2)
    assert all(r.get("onReason") != "OutOfMemoryError*"
               for r in last["retryStrategy"]["evaluateOnExit"])
    with pytest.raises(ResourceError, match="at most 5 retry rules"):
        job_definition(spec(retries=1, timeout=10, more_memory=(2**32,)), EC2)


def test_content_hash_follows_what_matters():
    base = content_hash(job_definition(spec(), EC2))
    assert content_hash(job_definition(spec(), EC2)) == base
    assert content_hash(job_definition(spec(memory=2**31 + 2**20), EC2)) != base
    assert content_hash(job_definition(spec(retries=1), EC2)) != base


def test_states_from_batch_records():
    assert task_status({"status": "RUNNABLE"}).state == "PENDING"
    assert task_status({"status": "STARTING"}).state == "PENDING"
    assert task_status({"status": "RUNNING", "attempts": []}).state == "RUNNING"
    done = task_status({"status": "SUCCEEDED", "container": {"exitCode": 0}, "attempts": [{}]})
    assert (done.state, done.exit_code, done.attempts) == ("SUCCEEDED", 0, 1)

    oom = task_status({"status": "FAILED", "statusReason": "Essential container in task exited",
                       "attempts": [{"container": {"exitCode": 137,
                                                   "reason": "OutOfMemoryError: Container killed due "
                                                             "to memory usage"}}]})
    assert (oom.state, oom.lost, oom.exit_code) == ("FAILED", "oom", 137)
    assert "OutOfMemoryError" in oom.reason

    batch_timeout = task_status({"status": "FAILED", "timeout": {"attemptDurationSeconds": 90},
                                 "statusReason": "Job attempt duration exceeded timeout"})
    assert (batch_timeout.lost, batch_timeout.reason) == ("timeout", "timed out after 90s")
    our_timeout = task_status({"status": "FAILED", "statusReason": "Essential container in task exited",
                               "container": {"exitCode": 124, "command": [
                                   "python3", "-m", "spmd_aws.task", "--timeout", "3", "--", "x"]}})
    assert (our_timeout.lost, our_timeout.reason) == ("timeout", "timed out after 3s")
    # exit code 124 without spmd's timeout is an ordinary failure
    assert task_status({"status": "FAILED", "container": {"exitCode": 124}}).lost == "error"

    cancelled = task_status({"status": "FAILED", "statusReason": CANCEL_REASON})
    assert (cancelled.state, cancelled.lost) == ("CANCELLED", "cancelled")

    crash = task_status({"status": "FAILED", "statusReason": "Essential container in task exited",
                         "container": {"exitCode": 3}, "attempts": [{}, {}]})
    assert (crash.state, crash.lost, crash.attempts, crash.exit_code) == ("FAILED", "error", 2, 3)
    assert crash.reason == "Essential container in task exited (exit code 3)"
    spot = task_status({"status": "FAILED", "statusReason": "Host EC2 (instance i-1) terminated."})
    assert spot.lost == "infrastructure" and spot.reason.startswith("spot reclaimed / host lost")
    assert "i-1" in spot.reason


# Reasons as AWS writes them ("CannotPullContainer errors", AWS Batch user guide; "Stopped
# tasks error codes", Amazon ECS developer guide): words like "canceled" and "Timeout" inside
# them say nothing about a cancel or a timeout.
PULL = ("CannotPullContainerError: Error response from daemon: Get https://1.dkr.ecr.us-east-1."
        "amazonaws.com/v2/: net/http: request canceled while waiting for connection "
        "(Client.Timeout exceeded while awaiting headers)")
START = "DockerTimeoutError: Could not transition to started; timed out after waiting 3m0s"


@pytest.mark.parametrize("record", [
    {"status": "FAILED", "statusReason": PULL, "attempts": []},
    {"status": "FAILED", "statusReason": "Task failed to start",
     "container": {"reason": PULL}, "attempts": []},
    {"status": "FAILED", "statusReason": "Essential container in task exited",
     "attempts": [{"statusReason": START, "container": {}}]},
    {"status": "FAILED", "statusReason": "ResourceInitializationError: unable to pull secrets or "
                                         "registry auth: execution resource retrieval failed"},
    {"status": "FAILED", "statusReason": "CannotStartContainerError: Error response from daemon: "
                                         "failed to create shim task: exec format error"},
])
def test_image_failures_are_infrastructure_losses_not_cancels_or_timeouts(record):
    status = task_status(record)
    assert (status.state, status.lost) == ("FAILED", "infrastructure")
    assert status.reason.startswith("image could not be pulled/started: check")
    assert "architecture" in status.reason  # what to check names the usual culprits


def test_only_spmds_own_reason_is_a_cancel_and_only_batchs_own_a_timeout():
    assert task_status({"status": "FAILED", "statusReason": "user canceled the order"}).lost == "error"
    assert task_status({"status": "FAILED", "statusReason": "a timeout in my code",
                        "container": {"exitCode": 1}}).lost == "error"
    waiting = task_status({"status": "RUNNABLE", "statusReason":
                           "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource "
                           "requirement is higher than that can be met by the CE(s)"})
    assert waiting.state == "PENDING" and waiting.reason.startswith("MISCONFIGURATION:")
    assert task_status({"status": "RUNNABLE", "statusReason": "anything else"}).reason == ""
    ended = task_status({"status": "FAILED",
                         "statusReason": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"},
                        waiting="MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - too big")
    assert (ended.state, ended.lost) == ("FAILED", "error")
    assert "never placed" in ended.reason and "too big" in ended.reason
    # whatever words the queue's cancel uses, a job that never started keeps the waiting reason
    other = task_status({"status": "FAILED", "statusReason": "Cancelled by job queue"},
                        waiting="CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - no capacity")
    assert (other.lost, other.state) == ("error", "FAILED") and "CAPACITY:" in other.reason


def test_children_listed_twice_keep_their_later_state_and_exit_codes_survive():
    listed = [{"jobId": "p:0", "status": "RUNNING"}, {"jobId": "p:1", "status": "RUNNING"},
              {"jobId": "p:0", "status": "SUCCEEDED"}, {"jobId": "p:1", "status": "RUNNING"},
              {"jobId": "p:2", "status": "FAILED"}, {"jobId": "p:2", "status": "FAILED"}]
    children = latest(listed)
    assert {k: v["status"] for k, v in children.items()} == \
        {"p:0": "SUCCEEDED", "p:1": "RUNNING", "p:2": "FAILED"}
    summary = {"jobId": "p:2", "status": "FAILED", "container": {"exitCode": 2}}
    detail = {"jobId": "p:2", "status": "FAILED", "attempts": [{}], "container": {"command": ["x"]}}
    assert task_status(merge(summary, detail)).exit_code == 2


def test_job_definitions_are_registered_once_and_found_again(aws_config, calls):
    from spmd_aws.config import AwsSettings
    opts = AwsSettings.from_settings(settings_of(aws_config))
    first = AwsBatchQueue(opts)
    arn = first.definition_arn(spec())
    assert first.definition_arn(spec()) == arn
    assert calls.count("batch", "RegisterJobDefinition") == 1
    calls.calls.clear()
    other = AwsBatchQueue(opts)  # another process: finds it by name and content
    assert other.definition_arn(spec()) == arn
    assert calls.count("batch", "RegisterJobDefinition") == 0
    assert other.definition_arn(spec(timeout=300)) != arn
    assert calls.count("batch", "RegisterJobDefinition") == 1


def test_submit_limits_are_checked_before_any_aws_call(aws_config, calls):
    from spmd_aws.config import AwsSettings
    opts = AwsSettings.from_settings(settings_of(aws_config))
    big = ArraySpec(job_id="j-1", image="reg/repo:abc", command=COMMAND, n_tasks=20_000,
                    resources=Resources(), env={"SMALL": "x", "TABLE": "y" * 31_000})
    with pytest.raises(ResourceError, match=r"at most (8192|30720)"):
        AwsBatchQueue(opts).submit(big)
    # ECS limits a task's container overrides to 8,192 bytes: SubmitJob would accept 20 KB
    # of env and the job would then FAIL ("Container Overrides length must be at most 8192")
    over = ArraySpec(job_id="j-1", image="reg/repo:abc", command=COMMAND, n_tasks=2,
                     resources=Resources(), env={"SMALL": "x", "TABLE": "y" * 20_000})
    with pytest.raises(ResourceError, match=r"at most 8192 .*'TABLE'"):
        AwsBatchQueue(opts).submit(over)
    fits = ArraySpec(job_id="j-1", image="reg/repo:abc", command=COMMAND, n_tasks=2,
                     resources=Resources(), env={"TABLE": "y" * 6_000})
    AwsBatchQueue(opts).check(fits)  # 6 KB of env, with Batch's own variables, fits
    gpu_fargate = AwsSettings.from_settings(settings_of({**aws_config, "fargate": True, "gpus": 1}))
    with pytest.raises(ResourceError, match="Fargate has no GPUs"):
        AwsBatchQueue(gpu_fargate).submit(spec())
    with pytest.raises(ResourceError, match="no store"):
        AwsBatchQueue(opts).submit(spec(more_memory=(2**32,)))
    assert calls.calls == []  # refused before provisioning, registering or submitting


def test_a_job_batch_no_longer_knows_ends_its_tasks_saying_so(aws_config, calls, monkeypatch):
    """DescribeJobs returns only the jobs Batch knows ("jobs": [] for an id it dropped, as for
    one that never existed; Batch API reference, DescribeJobs), here asked of moto's server for
    ids it never had. After FORGOTTEN_AFTER the tasks are FAILED with the reason, so the client
    takes each task's output where there is one and loses the rest: no wait forever."""
    import spmd_aws.queue as queue_module
    from spmd.batch_queue import FAILED, PENDING
    from spmd_aws.config import AwsSettings
    queue = AwsBatchQueue(AwsSettings.from_settings(settings_of(aws_config)))
    handle = encode_handle([("0b8a3c2e-0000-4000-8000-000000000001", 0, 3),
                            ("0b8a3c2e-0000-4000-8000-000000000002", 3, 1)])
    first = queue.states(handle)
    assert all(s.state == PENDING for s in first.values())  # a moment after submit: not yet
    monkeypatch.setattr(queue_module, "FORGOTTEN_AFTER", 0.0)
    later = queue.states(handle)
    assert sorted(later) == [0, 1, 2, 3]
    assert all(s.state == FAILED and s.lost == "infrastructure" for s in later.values())
    assert "the scheduler no longer knows this job" in later[3].reason
    assert "000000000002" in later[3].reason
