"""The replay layer: real AWS response shapes for what moto cannot produce.

``Replay`` puts botocore's Stubber on the backend's own clients (``spmd_aws.aws.Clients``),
made from a session of their own (the moto harness's hooks are not on it). Each canned
response is queued with ``add`` in the order the backend will ask; a request the backend
sends is checked against botocore's service model (parameter validation is on), so a
wrong field name fails the test, and each canned response is checked against the model's
output shape by the Stubber. Every request is recorded in ``requests``.

The canned records below are built from the examples and field descriptions in the AWS
docs named beside each one.
"""
from __future__ import annotations

from botocore.stub import Stubber

REGION = "us-east-1"
QUEUE_ARN = "arn:aws:batch:us-east-1:123456789012:job-queue/spmd-ec2"
ROLE_ARN = "arn:aws:iam::123456789012:role/spmd/spmd-job"
DEFINITION_ARN = "arn:aws:batch:us-east-1:123456789012:job-definition/spmd-0123456789abcdef:1"
STARTED = 1764046800000  # epoch milliseconds, as Batch reports startedAt


class Replay:
    """Stubbers on every client of one Clients; use as a context manager."""

    def __init__(self, clients):
        self.clients = clients
        self.requests: list[tuple[str, str, dict]] = []
        self._stubbers: dict[str, Stubber] = {}

    def client(self, service: str):
        client = self.clients(service)
        if service not in self._stubbers:
            assert client.meta.config.parameter_validation is True
            client.meta.events.register("provide-client-params", self._record,
                                        unique_id="spmd-replay-record")
            self._stubbers[service] = Stubber(client)
            self._stubbers[service].activate()
        return client

    def _record(self, params, model, **_):
        self.requests.append((model.service_model.service_name, model.name, dict(params)))

    def add(self, service: str, method: str, response: dict, expected: dict | None = None) -> None:
        """Queue the response to the next ``method`` call (boto3's snake_case name)."""
        self.client(service)
        self._stubbers[service].add_response(method, response, expected)

    def add_error(self, service: str, method: str, code: str, message: str, status: int) -> None:
        self.client(service)
        self._stubbers[service].add_client_error(method, code, message, status)

    def count(self, operation: str) -> int:
        return sum(1 for _, op, _ in self.requests if op == operation)

    def __enter__(self) -> "Replay":
        return self

    def __exit__(self, *exc) -> None:
        for stubber in self._stubbers.values():
            if exc[0] is None:
                stubber.assert_no_pending_responses()
            stubber.deactivate()


def summary(job_id: str, status: str, **fields) -> dict:
    """A ListJobs JobSummary (AWS Batch API Reference, "JobSummary")."""
    out = {"jobId": job_id, "jobName": "spmd-job-0", "status": status, **fields}
    if ":" in job_id:
        out["arrayProperties"] = {"index": int(job_id.rsplit(":", 1)[1])}
    return out


def detail(job_id: str, status: str, **fields) -> dict:
    """A DescribeJobs JobDetail (AWS Batch API Reference, "JobDetail")."""
    return {"jobId": job_id, "jobName": "spmd-job-0", "jobQueue": QUEUE_ARN, "status": status,
            "startedAt": STARTED, "jobDefinition": DEFINITION_ARN, **fields}


# "CannotPullContainer errors" (AWS Batch user guide, troubleshooting) and "Stopped tasks
# error codes" (Amazon ECS developer guide): the text of a pull that timed out. It holds
# "canceled" and "Timeout", and is neither a cancel nor a timeout.
PULL_FAILED = ("CannotPullContainerError: Error response from daemon: Get "
               "\"https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/\": net/http: request "
               "canceled while waiting for connection (Client.Timeout exceeded while awaiting "
               "headers)")

# The shape of that failure on EC2 ("CannotPullContainer errors", AWS Batch user guide; public
# reports such as seqeralabs/wave#910, "Task failed to start - CannotPullContainerError: ..."):
# the job's statusReason is "Task failed to start", the ECS stop code is container.reason.
START_FAILED = "Task failed to start"


def batch_action(strategy: dict, job: dict) -> str:
    """What Batch does after an attempt ended as job says, by retryStrategy.evaluateOnExit
    ("EvaluateOnExit", AWS Batch API Reference): the first rule whose given conditions all
    match; onStatusReason matches statusReason, onReason the container's reason, onExitCode
    the exit code, each a pattern that may end in * (a prefix); no rule matching: RETRY."""
    fields = {"onStatusReason": job.get("statusReason") or "",
              "onReason": (job.get("container") or {}).get("reason") or "",
              "onExitCode": str((job.get("container") or {}).get("exitCode", ""))}

    def matches(pattern: str, text: str) -> bool:
        return text.startswith(pattern[:-1]) if pattern.endswith("*") else text == pattern
    for rule in strategy["evaluateOnExit"]:
        if all(matches(rule[k], fields[k]) for k in fields if k in rule):
            return rule["action"]
    return "RETRY"


# "Jobs stuck in a RUNNABLE status" (AWS Batch user guide): the statusReason ListJobs and
# DescribeJobs give a job blocking the head of the queue.
MISCONFIGURED = ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement "
                 "(vCPU/memory/GPU) is higher than that can be met by the CE(s) attached to the "
                 "job queue.")
# "Automatic remediation with jobStateTimeLimitActions" (AWS Batch user guide) and
# "JobStateTimeLimitAction" (API Reference): after maxTimeSeconds the job is cancelled and
# the action's reason, one of the documented statusReason values, is logged as its reason.
CANCELLED_BY_QUEUE = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"

# "DeleteObjects" (Amazon S3 API Reference): HTTP 200 with an <Error> per key not deleted.
DELETE_DENIED = {"Code": "AccessDenied", "Message": "Access Denied"}


# -- provisioning ------------------------------------------------------------------------

CE_ARN = "arn:aws:batch:us-east-1:123456789012:compute-environment/spmd-ec2"
PROFILE_ARN = "arn:aws:iam::123456789012:instance-profile/spmd/spmd/spmd-instance"
SERVICE_ROLE = ("arn:aws:iam::123456789012:role/aws-service-role/batch.amazonaws.com/"
                "AWSServiceRoleForBatch")
OURS = {"spmd:stack": "spmd"}


def environment(status: str, state: str = "ENABLED", *, reason: str | None = None,
                tags: dict | None = None, **resources) -> dict:
    """A DescribeComputeEnvironments ComputeEnvironmentDetail (AWS Batch API Reference,
    "ComputeEnvironmentDetail"); resources override the stack's EC2 computeResources."""
    out = {"computeEnvironmentName": "spmd-ec2", "computeEnvironmentArn": CE_ARN,
           "ecsClusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/spmd-ec2_Batch_1",
           "tags": OURS if tags is None else tags, "type": "MANAGED", "state": state,
           "status": status, "serviceRole": SERVICE_ROLE,
           "computeResources": {"type": "EC2", "allocationStrategy": "BEST_FIT_PROGRESSIVE",
                                "minvCpus": 0, "maxvCpus": 256, "desiredvCpus": 0,
                                "instanceTypes": ["optimal"], "subnets": ["subnet-1"],
                                "securityGroupIds": ["sg-1"], "instanceRole": PROFILE_ARN,
                                "launchTemplate": {"launchTemplateName": "spmd-instances",
                                                   "version": "$Default"},
                                "tags": OURS, **resources}}
    if reason:
        out["statusReason"] = reason
    return out


def job_queue(status: str, state: str = "ENABLED", **fields) -> dict:
    """A DescribeJobQueues JobQueueDetail (AWS Batch API Reference, "JobQueueDetail")."""
    return {"jobQueueName": "spmd-ec2", "jobQueueArn": QUEUE_ARN, "state": state,
            "status": status, "priority": 1, "tags": OURS,
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": CE_ARN}], **fields}


# "Troubleshooting AWS Batch" → "INVALID compute environment" (AWS Batch user guide): an
# instance profile made a moment ago is not yet usable by Batch; the environment turns
# INVALID after CreateComputeEnvironment succeeded, and an update makes Batch try again.
INVALID_PROFILE = f"CLIENT_ERROR - Invalid IamInstanceProfile: {PROFILE_ARN}"
# "Jobs stuck in RUNNABLE due to capacity" (AWS Batch user guide): the statusReason of a job
# jobStateTimeLimitActions cancelled.
TIME_LIMIT_CANCELLED = ("Canceled by JobStateTimeLimit action due to reason: "
                        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")
# "DescribeInstanceTypes" (Amazon EC2 API Reference): InstanceTypeInfo of c5.large.
C5_LARGE = {"InstanceType": "c5.large", "VCpuInfo": {"DefaultVCpus": 2},
            "MemoryInfo": {"SizeInMiB": 4096}}


def signing_secret(replay, bucket: str = "lab-data") -> None:
    """GetObject of the bucket's signing secret (spmd_aws.signing), which submit reads to
    give the job's tasks their key ("GetObject", Amazon S3 API Reference)."""
    import io

    from botocore.response import StreamingBody
    replay.add("s3", "get_object", {"Body": StreamingBody(io.BytesIO(b"s" * 32), 32)},
               {"Bucket": bucket, "Key": "spmd/write-secret"})
