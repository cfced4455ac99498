"""Provisioning against replayed AWS responses moto cannot produce: an INVALID compute
environment, DELETING/DELETED ones still listed, drift, and what fits on the instances.

Each test drives spmd_aws's own code (compute.py, provision.deployment, AwsBatchQueue) on
its own clients with botocore's Stubber (see canned.py for the docs each response comes
from); every request is validated against botocore's service model as it is sent.
"""
import pytest

from spmd.batch_queue import ArraySpec, Resources
from spmd.errors import ResourceError
from spmd_aws import compute, provision
from spmd_aws.aws import ProvisionError
from spmd_aws.config import AwsSettings
from spmd_aws.provision import Deployment, Report
from spmd_aws.queue import AwsBatchQueue
from spmd_aws.reasons import task_status
from spmd_aws.stack import Stack

from .canned import signing_secret
from .canned import (
    C5_LARGE, CE_ARN, INVALID_PROFILE, PROFILE_ARN, QUEUE_ARN, ROLE_ARN, SERVICE_ROLE,
    TIME_LIMIT_CANCELLED, Replay, environment, job_queue,
)

STACK = Stack()
NAME = {"computeEnvironments": ["spmd-ec2"]}



@pytest.fixture
def pauses(monkeypatch):
    """The seconds compute.py sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(compute, "_sleep", slept.append)
    return slept


def wanted(**config) -> dict:
    opts = AwsSettings(bucket="lab-data", **config)
    return compute.compute_resources(opts, ["subnet-1"], ["sg-1"], PROFILE_ARN, "spmd-instances")


def describe(replay, *entries) -> None:
    replay.add("batch", "describe_compute_environments",
               {"computeEnvironments": list(entries)}, NAME)


def updatable(resources: dict) -> dict:
    return {k: resources[k] for k in compute.UPDATABLE["EC2"] if k in resources}


def test_an_invalid_compute_environment_is_repaired_by_up(clients, pauses):
    invalid = environment("INVALID", reason=INVALID_PROFILE)
    with Replay(clients) as replay:
        describe(replay, invalid)  # found, INVALID: the instance profile was not usable yet
        describe(replay, invalid)
        # UpdateComputeEnvironment (AWS Batch API Reference): the same settings, validated again
        replay.add("batch", "update_compute_environment",
                   {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN},
                   {"computeEnvironment": "spmd-ec2", "serviceRole": SERVICE_ROLE,
                    "computeResources": updatable(wanted())})
        describe(replay, environment("UPDATING"))
        describe(replay, environment("VALID"))
        report = Report("spmd")
        env = compute.ensure_compute_environment(replay.client("batch"), STACK, wanted(),
                                                 SERVICE_ROLE, report)
    assert env["status"] == "VALID"
    assert ("repaired", "compute environment", f"spmd-ec2 (was INVALID: {INVALID_PROFILE})") \
        in report.lines
    assert pauses == [compute.REPAIR_DELAYS[0], 0.5]  # backoff before the repair, then a poll


def test_up_gives_up_on_an_environment_that_stays_invalid_after_a_bounded_wait(clients, pauses):
    invalid = environment("INVALID", reason=INVALID_PROFILE)
    with Replay(clients) as replay:
        describe(replay, invalid)
        describe(replay, invalid)
        for _ in compute.REPAIR_DELAYS:
            replay.add("batch", "update_compute_environment",
                       {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN})
            describe(replay, invalid)
        with pytest.raises(ProvisionError) as info:
            compute.ensure_compute_environment(replay.client("batch"), STACK, wanted(),
                                               SERVICE_ROLE, Report("spmd"))
    assert pauses == list(compute.REPAIR_DELAYS) and sum(pauses) < 300
    message = str(info.value)
    assert "still INVALID" in message and INVALID_PROFILE in message
    assert "instance profile spmd-instance" in message and "spmd aws up" in message


def test_deployment_checks_the_compute_environment_not_only_the_queue(clients, monkeypatch):
    ran = []
    repaired = Deployment(QUEUE_ARN, ROLE_ARN, compute_environment="spmd-ec2", max_vcpus=256)

    def up(opts):
        ran.append(opts)
        return Report("spmd", deployment=repaired)
    monkeypatch.setattr(provision, "up", up)
    opts = AwsSettings(bucket="lab-data")
    monkeypatch.setattr(AwsSettings, "clients", lambda self: clients)
    with Replay(clients) as replay:
        replay.add("batch", "describe_job_queues", {"jobQueues": [job_queue("VALID")]},
                   {"jobQueues": ["spmd-ec2"]})
        describe(replay, environment("INVALID", reason=INVALID_PROFILE))
        assert provision.deployment(opts) == repaired
    assert ran == [opts]  # the queue looked fine; the environment did not, so up repaired it


def test_deleted_compute_environments_and_queues_are_ignored_by_up(clients, pauses):
    gone = environment("DELETED", "DISABLED")  # listed for a while after down
    with Replay(clients) as replay:
        describe(replay, gone)
        replay.add("batch", "create_compute_environment",
                   {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN},
                   {"computeEnvironmentName": "spmd-ec2", "type": "MANAGED", "state": "ENABLED",
                    "computeResources": wanted(), "serviceRole": SERVICE_ROLE,
                    "tags": STACK.tags})
        describe(replay, gone, environment("CREATING"))
        describe(replay, gone, environment("VALID"))
        report = Report("spmd")
        batch = replay.client("batch")
        env = compute.ensure_compute_environment(batch, STACK, wanted(), SERVICE_ROLE, report)
        old_queue = job_queue("DELETED", "DISABLED")
        replay.add("batch", "describe_job_queues", {"jobQueues": [old_queue]})
        # CreateJobQueue (AWS Batch API Reference) with jobStateTimeLimitActions
        replay.add("batch", "create_job_queue", {"jobQueueName": "spmd-ec2", "jobQueueArn": QUEUE_ARN},
                   {"jobQueueName": "spmd-ec2", "state": "ENABLED", "priority": 1,
                    "tags": STACK.tags,
                    "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "spmd-ec2"}],
                    "jobStateTimeLimitActions": compute.time_limit_actions()})
        replay.add("batch", "describe_job_queues", {"jobQueues": [old_queue, job_queue("VALID")]})
        queue = compute.ensure_job_queue(batch, STACK, env["computeEnvironmentName"], report)
    assert env["status"] == "VALID" and queue["status"] == "VALID"
    assert report.names("created") == ["compute environment spmd-ec2", "job queue spmd-ec2"]
    reasons = {a["reason"] for a in compute.time_limit_actions()}
    assert reasons == {"MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
                       "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
                       "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"}


def test_a_name_still_deleting_is_waited_for_before_it_is_reused(clients, pauses):
    with Replay(clients) as replay:
        describe(replay, environment("DELETING", "DISABLED"))  # CreateComputeEnvironment would fail
        describe(replay, environment("DELETED", "DISABLED"))
        replay.add("batch", "create_compute_environment",
                   {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN})
        describe(replay, environment("VALID"))
        compute.ensure_compute_environment(replay.client("batch"), STACK, wanted(),
                                           SERVICE_ROLE, Report("spmd"))
    assert pauses == [0.5]


def test_an_environment_missing_after_create_is_a_provision_error(clients, pauses):
    with Replay(clients) as replay:
        describe(replay)
        replay.add("batch", "create_compute_environment",
                   {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN})
        describe(replay)  # `[env] = ...` raised a bare ValueError here
        with pytest.raises(ProvisionError, match="not listed by AWS Batch"):
            compute.ensure_compute_environment(replay.client("batch"), STACK, wanted(),
                                               SERVICE_ROLE, Report("spmd"))


def test_any_failure_while_provisioning_is_a_provision_error():
    with pytest.raises(ProvisionError, match="provisioning x failed: ValueError: not enough"):
        with provision.provisioning("provisioning x"):
            # what `[env] = environments` raises on an unexpected empty answer
            raise ValueError("not enough values to unpack (expected 1, got 0)")


def no_running_work(replay) -> None:
    """ListJobs of the stack's queue, one result per state an update would end: none."""
    for status in compute.ACTIVE:
        replay.add("batch", "list_jobs", {"jobSummaryList": []},
                   {"jobQueue": "spmd-ec2", "jobStatus": status, "maxResults": 1})


def test_config_drift_is_updated_in_place(clients, pauses):
    deployed = environment("VALID", instanceTypes=["c5"], subnets=["subnet-1"], maxvCpus=32)
    resources = wanted(instance_types=("c6i",), max_vcpus=64)
    with Replay(clients) as replay:
        describe(replay, deployed)
        no_running_work(replay)  # an infrastructure update: asked first
        replay.add("batch", "update_compute_environment",
                   {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN},
                   {"computeEnvironment": "spmd-ec2", "serviceRole": SERVICE_ROLE,
                    "computeResources": {"maxvCpus": 64, "instanceTypes": ["c6i"]}})
        describe(replay, environment("VALID", instanceTypes=["c6i"], maxvCpus=64))
        report = Report("spmd")
        compute.ensure_compute_environment(replay.client("batch"), STACK, resources,
                                           SERVICE_ROLE, report)
    assert report.names("updated") == [
        "compute environment spmd-ec2 (maxvCpus 32 → 64; instanceTypes c5 → c6i)"]


def test_a_scaling_update_goes_ahead_without_asking_for_running_jobs(clients, pauses):
    with Replay(clients) as replay:
        describe(replay, environment("VALID", maxvCpus=32))
        replay.add("batch", "update_compute_environment",
                   {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN},
                   {"computeEnvironment": "spmd-ec2", "serviceRole": SERVICE_ROLE,
                    "computeResources": {"maxvCpus": 256}})
        describe(replay, environment("VALID"))
        compute.ensure_compute_environment(replay.client("batch"), STACK, wanted(),
                                           SERVICE_ROLE, Report("spmd"))
    assert replay.count("ListJobs") == 0


RUNNING = {"jobSummaryList": [{"jobId": "a1", "jobName": "spmd-job-0", "status": "PENDING"}]}


def test_up_refuses_an_infrastructure_update_under_running_work(clients, pauses):
    # "UpdatePolicy" (AWS Batch API Reference): an infrastructure update ends running jobs
    # after jobExecutionTimeoutMinutes; an array's parent is PENDING while children run.
    with Replay(clients) as replay:
        describe(replay, environment("VALID", instanceTypes=["c5"]))
        for status in ("RUNNING", "STARTING"):
            replay.add("batch", "list_jobs", {"jobSummaryList": []},
                       {"jobQueue": "spmd-ec2", "jobStatus": status, "maxResults": 1})
        replay.add("batch", "list_jobs", RUNNING,
                   {"jobQueue": "spmd-ec2", "jobStatus": "PENDING", "maxResults": 1})
        with pytest.raises(ProvisionError) as info:
            compute.ensure_compute_environment(replay.client("batch"), STACK,
                                               wanted(instance_types=("c6i",)), SERVICE_ROLE,
                                               Report("spmd"))
    message = str(info.value)
    assert "instanceTypes c5 → c6i" in message and "job a1" in message
    assert "`spmd aws up --wait`" in message and "`spmd aws up --force`" in message
    assert replay.count("UpdateComputeEnvironment") == 0


def test_up_wait_applies_the_update_once_the_jobs_have_ended(clients, pauses):
    with Replay(clients) as replay:
        describe(replay, environment("VALID", instanceTypes=["c5"]))
        replay.add("batch", "list_jobs", RUNNING)  # RUNNING: one
        replay.add("batch", "list_jobs", RUNNING)  # waiting: asked again, still one
        no_running_work(replay)  # after a pause: none
        replay.add("batch", "update_compute_environment",
                   {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN})
        describe(replay, environment("VALID", instanceTypes=["c6i"]))
        compute.ensure_compute_environment(replay.client("batch"), STACK,
                                           wanted(instance_types=("c6i",)), SERVICE_ROLE,
                                           Report("spmd"), compute.WAIT)
    assert pauses == [0.5]
    with Replay(clients) as replay:  # --force: no question asked
        describe(replay, environment("VALID", instanceTypes=["c5"]))
        replay.add("batch", "update_compute_environment",
                   {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN})
        describe(replay, environment("VALID", instanceTypes=["c6i"]))
        compute.ensure_compute_environment(replay.client("batch"), STACK,
                                           wanted(instance_types=("c6i",)), SERVICE_ROLE,
                                           Report("spmd"), compute.FORCE)
    assert replay.count("ListJobs") == 0


def test_what_batch_cannot_update_in_place_is_said_plainly(clients, pauses):
    deployed = environment("VALID", allocationStrategy="BEST_FIT", instanceTypes=["c5"])
    with Replay(clients) as replay:
        describe(replay, deployed)
        with pytest.raises(ProvisionError) as info:
            compute.ensure_compute_environment(replay.client("batch"), STACK,
                                               wanted(instance_types=("c6i",)), SERVICE_ROLE,
                                               Report("spmd"))
    message = str(info.value)
    assert "cannot change in place (instanceTypes c5 → c6i)" in message
    assert "allocation strategy BEST_FIT" in message and "`spmd aws down`" in message
    assert replay.count("UpdateComputeEnvironment") == 0


def test_an_existing_queue_gets_the_time_limit_actions(clients, pauses):
    with Replay(clients) as replay:
        replay.add("batch", "describe_job_queues", {"jobQueues": [job_queue("VALID")]})
        replay.add("batch", "update_job_queue", {"jobQueueName": "spmd-ec2", "jobQueueArn": QUEUE_ARN},
                   {"jobQueue": "spmd-ec2",
                    "jobStateTimeLimitActions": compute.time_limit_actions()})
        replay.add("batch", "describe_job_queues", {"jobQueues": [
            job_queue("VALID", jobStateTimeLimitActions=compute.time_limit_actions())]})
        report = Report("spmd")
        compute.ensure_job_queue(replay.client("batch"), STACK, "spmd-ec2", report)
    assert report.names("updated") == ["job queue spmd-ec2 (jobStateTimeLimitActions)"]


def test_a_job_the_time_limit_cancelled_reads_as_never_placed():
    status = task_status({"jobId": "p:0", "status": "FAILED", "attempts": [],
                          "statusReason": TIME_LIMIT_CANCELLED})
    assert (status.state, status.lost) == ("FAILED", "error")
    assert status.reason.startswith("never placed") and "JOB_RESOURCE_REQUIREMENT" in status.reason


# -- what fits on the compute environment's instances ---------------------------------

def spec(vcpus: float = 1, memory: int = 2**30) -> ArraySpec:
    return ArraySpec("j-1", "reg/spmd-tasks:abc", ("python3", "-m", "spmd.task.worker"), 4,
                     Resources(vcpus=vcpus, memory=memory))


def queue_on(clients, instance_types, gpus=None, max_vcpus=16) -> AwsBatchQueue:
    queue = AwsBatchQueue(AwsSettings(bucket="lab-data", gpus=gpus), clients)
    queue._deployment = Deployment(QUEUE_ARN, ROLE_ARN, compute_environment="spmd-ec2",
                                   max_vcpus=max_vcpus, instance_types=tuple(instance_types))
    return queue


def test_a_task_no_instance_type_can_hold_is_refused_before_submit(clients):
    queue = queue_on(clients, ["c5.large"])
    with Replay(clients) as replay:
        replay.add("ec2", "describe_instance_types", {"InstanceTypes": [C5_LARGE]},
                   {"InstanceTypes": ["c5.large"]})
        with pytest.raises(ResourceError) as info:
            queue.submit(spec(vcpus=2, memory=8 * 2**30))
    message = str(info.value)
    assert "no instance type of compute environment spmd-ec2 (c5.large)" in message
    assert "2 vCPUs and 8192 MiB" in message and "c5.large 2 vCPUs/4096 MiB" in message
    assert "instance_types" in message
    assert [op for _, op, _ in replay.requests] == ["DescribeInstanceTypes"]  # nothing submitted


@pytest.mark.parametrize("asked, gpus, words", [
    (dict(memory=2 * 2**40), None, "larger instance types"),    # 2 TiB: above r6i.32xlarge
    (dict(), 1, "GPU instance types"),                            # optimal has no GPUs
    (dict(vcpus=32), None, "maxvCpus 16"),                        # above the environment's
])
def test_with_optimal_a_known_bound_refuses_without_asking_ec2(clients, asked, gpus, words):
    queue = queue_on(clients, ["optimal"], gpus=gpus)
    with Replay(clients) as replay:
        with pytest.raises(ResourceError, match=words):
            queue.submit(spec(**asked))
    assert replay.requests == []


def test_graviton_gets_arm_instances_by_default():
    """Batch's "optimal" holds only x86_64 families: an arm64 stack would get no instance
    its images run on."""
    from spmd.config import resolve
    arm = AwsSettings.from_settings(resolve({"backend": "aws", "bucket": "lab-data", "architecture": "arm64"}))
    x86 = AwsSettings.from_settings(resolve({"backend": "aws", "bucket": "lab-data"}))
    assert (arm.instance_types, x86.instance_types) == (("default_arm64",), ("optimal",))


def test_the_largest_of_several_memory_sizes_must_fit_an_instance():
    """memory=[sizes] may run a task again at its largest size: that one must fit too."""
    c5 = [compute.InstanceSize("c5.large", 2, 4096)]
    compute.check_fits(Resources(memory=2**30), None, c5, 16, "spmd-ec2")
    with pytest.raises(ResourceError, match="1 vCPUs and 8192 MiB"):
        compute.check_fits(Resources(memory=2**30, more_memory=(8 * 2**30,)), None, c5, 16,
                           "spmd-ec2")


def test_a_stack_made_before_the_log_group_gets_it_with_its_next_job_definition(clients):
    queue = AwsBatchQueue(AwsSettings(bucket="lab-data"), clients)
    queue._deployment = Deployment(QUEUE_ARN, ROLE_ARN, compute_environment="spmd-ec2",
                                   max_vcpus=16, log_group="/spmd/spmd/tasks")
    with Replay(clients) as replay:
        replay.add("batch", "describe_job_definitions", {"jobDefinitions": []})
        # DescribeLogGroups / CreateLogGroup / PutRetentionPolicy (CloudWatch Logs API Reference)
        replay.add("logs", "describe_log_groups", {"logGroups": []},
                   {"logGroupNamePrefix": "/spmd/spmd/tasks"})
        replay.add("logs", "describe_log_groups", {"logGroups": []})
        replay.add("logs", "create_log_group", {},
                   {"logGroupName": "/spmd/spmd/tasks", "tags": {"spmd:stack": "spmd"}})
        replay.add("logs", "put_retention_policy", {},
                   {"logGroupName": "/spmd/spmd/tasks", "retentionInDays": 30})
        replay.add("batch", "register_job_definition", {
            "jobDefinitionName": "spmd-x", "jobDefinitionArn": QUEUE_ARN, "revision": 1})
        signing_secret(replay)
        replay.add("batch", "submit_job", {"jobName": "j-1-0", "jobId": "p1"})
        queue.submit(spec())
    [definition] = [p for _, op, p in replay.requests if op == "RegisterJobDefinition"]
    assert definition["containerProperties"]["logConfiguration"] == {
        "logDriver": "awslogs", "options": {"awslogs-group": "/spmd/spmd/tasks"}}
