"""Provisioning: ``up`` makes what a stack needs, ``down`` removes what carries its tag.

    up(settings)    bucket ─ ECR repository (+ lifecycle policy) ─ task log group (retention)
                    ─ IAM roles + instance profile (permissions.py) ─ networking
                    ─ EC2 launch template ─ compute environment (EC2, spot or Fargate)
                    ─ job queue (compute.py)
    down(settings)  job queues ─ compute environments ─ job definitions ─ launch template
                    ─ log group ─ IAM ─ ECR ─ bucket, each only when tagged spmd:stack=<stack>

Both are idempotent: what exists is found and reported, never made twice; what differs
from the config is updated where AWS allows it in place (``compute.py``), an
infrastructure update only when no job runs on the environment (or ``--wait``/``--force``).
``deployment`` is what the queue calls before its first submit: a quick look (four
requests), and ``up`` only when something is missing, broken (an INVALID compute
environment) or the job role's policy differs from the config. A compute environment that
differs from the config is used as it is, saying so: a map never changes infrastructure
that other jobs may be running on. Every failure while provisioning is a
``ProvisionError`` (a ``ConfigError`` for a config AWS would refuse).

Least privilege: tasks run as the job role, which may read and write objects under this
bucket's ``jobs/`` prefix and list only that prefix, read the profile's ``read_buckets``
and put objects under its ``write_buckets`` (``permissions.job_policy``); no keys are ever
put in an image or a job's environment. The EC2 hosts get AWS's managed ECS instance policy (pull images,
write logs, talk to ECS); Fargate tasks get AWS's managed task execution policy.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from spmd.config import Settings
from spmd.errors import ConfigError, SpmdError, StoreError

from . import compute, permissions
from .aws import Clients, ProvisionError, boundary, error_code
from .config import AwsSettings
from .permissions import job_policy
from .stack import Stack

__all__ = ["Deployment", "ProvisionError", "Report", "deployment", "down", "ensure_bucket",
           "job_policy", "up"]

log = logging.getLogger("spmd")

INSTANCE_POLICY = "service-role/AmazonEC2ContainerServiceforEC2Role"
EXECUTION_POLICY = "service-role/AmazonECSTaskExecutionRolePolicy"
#: retention values CloudWatch Logs accepts (PutRetentionPolicy, CloudWatch Logs API Reference)
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)


@dataclass(frozen=True)
class Deployment:
    """What a job needs from a provisioned stack, as deployed (not as configured)."""

    job_queue: str
    job_role: str
    platform: str = "EC2"  # or FARGATE
    execution_role: str | None = None
    compute_environment: str = ""
    max_vcpus: float | None = None  # the compute environment's maxvCpus
    instance_types: tuple[str, ...] = ()  # the compute environment's (EC2)
    log_group: str = "/aws/batch/job"


@dataclass
class Report:
    """What ``up`` or ``down`` did, one line per resource: ``created``, ``found``, ``deleted``..."""

    stack: str
    lines: list[tuple[str, str, str]] = field(default_factory=list)
    deployment: Deployment | None = None

    def add(self, action: str, kind: str, name: str) -> None:
        self.lines.append((action, kind, name))
        log.info("%s %s %s", action, kind, name)

    def names(self, action: str) -> list[str]:
        return [f"{kind} {name}" for a, kind, name in self.lines if a == action]

    def __str__(self) -> str:
        width = max((len(a) for a, _, _ in self.lines), default=0)
        body = [f"{a:<{width}}  {kind}  {name}" for a, kind, name in self.lines]
        return "\n".join([f"stack {self.stack}:", *(body or ["nothing"])])


@contextmanager
def provisioning(what: str) -> Iterator[None]:
    """Every failure inside is a ProvisionError naming what was being done (ConfigError,
    which names a key to fix, stays one)."""
    try:
        with boundary(ProvisionError, what):
            yield
    except (ProvisionError, ConfigError):
        raise
    except SpmdError as exc:
        raise ProvisionError(f"{what} failed: {exc}", code=getattr(exc, "code", "")) from exc
    except Exception as exc:
        raise ProvisionError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def ensure_bucket(clients: Clients, bucket: str, stack: Stack, retention_days: int,
                  prefix: str = "") -> str:
    """'created' or 'found': the bucket, made when missing (tagged, encrypted, private, with
    job data expiring)."""
    s3 = clients("s3")
    with boundary(StoreError, f"checking bucket {bucket}"):
        try:
            s3.head_bucket(Bucket=bucket)
            return "found"
        except Exception as exc:
            if error_code(exc) == "403":
                raise StoreError(f"bucket {bucket} exists but this AWS identity cannot use it "
                                 "(bucket names are global: it may belong to another account; "
                                 "pick another name)") from exc
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
    with boundary(StoreError, f"creating bucket {bucket}"):
        request = {"Bucket": bucket}
        if clients.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": clients.region}
        try:
            s3.create_bucket(**request)
        except Exception as exc:
            if error_code(exc) != "BucketAlreadyOwnedByYou":
                raise
            return "found"
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": stack.tag_list})
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
            "BucketKeyEnabled": True}]})
        jobs = permissions.jobs_prefix(prefix)
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
            "ID": "spmd-expire-jobs", "Status": "Enabled", "Filter": {"Prefix": jobs},
            "Expiration": {"Days": retention_days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})
    log.warning("created bucket s3://%s (job data expires after %d days)", bucket, retention_days)
    return "created"


def log_retention(days: int) -> int:
    """The shortest retention CloudWatch Logs accepts that keeps logs at least ``days``."""
    return next((d for d in LOG_RETENTION_DAYS if d >= days), LOG_RETENTION_DAYS[-1])


def ensure_log_group(logs, stack: Stack, retention_days: int) -> str:
    """'created', 'found' or 'updated': the stack's task log group, tagged, with a retention."""
    name, days = stack.log_group, log_retention(retention_days)
    found = [g for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
             if g["logGroupName"] == name]
    if not found:
        try:
            logs.create_log_group(logGroupName=name, tags=stack.tags)
        except Exception as exc:  # made meanwhile by another process
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise
        logs.put_retention_policy(logGroupName=name, retentionInDays=days)
        return "created"
    if not stack.owns(logs.list_tags_log_group(logGroupName=name).get("tags")):
        return "found (not tagged by this stack; left as it is)"
    if found[0].get("retentionInDays") != days:
        logs.put_retention_policy(logGroupName=name, retentionInDays=days)
        return "updated"
    return "found"


def _delete_log_group(logs, stack: Stack) -> str:
    name = stack.log_group
    found = [g for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
             if g["logGroupName"] == name]
    if not found:
        return "absent"
    if not stack.owns(logs.list_tags_log_group(logGroupName=name).get("tags")):
        return "kept (not tagged by this stack)"
    logs.delete_log_group(logGroupName=name)
    return "deleted"


# -- up, down, deployment ----------------------------------------------------------

def _options(settings: Settings | AwsSettings) -> AwsSettings:
    return settings if isinstance(settings, AwsSettings) else AwsSettings.from_settings(settings)


def _deployment(stack: Stack, queue: dict, env: dict, job_role: str,
                execution_role: str | None) -> Deployment:
    resources = env.get("computeResources") or {}
    return Deployment(queue["jobQueueArn"], job_role, "FARGATE" if stack.fargate else "EC2",
                      execution_role, env.get("computeEnvironmentName", ""),
                      resources.get("maxvCpus"), tuple(resources.get("instanceTypes") or ()),
                      stack.log_group)


def _data_access(opts: AwsSettings) -> str:
    """What the config lets tasks read and write besides job data, in a few words."""
    read = ", ".join(permissions.bucket_entries(opts.read_buckets)) or "none"
    write = ", ".join(permissions.bucket_entries(opts.write_buckets)) or "none"
    return f"read_buckets {read}; write_buckets {write}"


def up(settings: Settings | AwsSettings, *, on_running: str = compute.REFUSE) -> Report:
    """Make every resource the stack needs that is missing, repair what is broken and update
    what differs from the config; a second call creates nothing.

    on_running: an update of the compute environment's infrastructure while jobs run on it
    is refused (``"refuse"``), made once they end (``"wait"``) or made now (``"force"``).
    """
    opts = _options(settings)
    clients, stack = opts.clients(), opts.stack
    report = Report(stack.name)
    with provisioning(f"provisioning bucket {opts.bucket}"):
        report.add(ensure_bucket(clients, opts.bucket, stack, opts.retention_days, opts.prefix),
                   "bucket", opts.bucket)
    from .registry import ensure_lifecycle_policy, ensure_repository
    with provisioning(f"provisioning ECR repository {stack.repository}"):
        report.add(ensure_repository(clients, stack)[1], "ECR repository", stack.repository)
        report.add(ensure_lifecycle_policy(clients, stack), "ECR lifecycle policy",
                   stack.repository)
    with provisioning(f"provisioning log group {stack.log_group}"):
        report.add(ensure_log_group(clients("logs"), stack, opts.retention_days), "log group",
                   stack.log_group)
    partition = permissions.partition(clients.region)
    managed = f"arn:{partition}:iam::aws:policy/"
    with provisioning(f"provisioning IAM roles of stack {stack.name}"):
        iam = clients("iam")
        account = clients("sts").get_caller_identity()["Account"]  # the roles' trust
        if opts.job_role:
            job_role = permissions.role_arn(iam, opts.job_role)
            report.add("configured", "IAM role", job_role)
        else:
            job_role, action = permissions.ensure_role(
                iam, stack, stack.job_role, "ecs-tasks.amazonaws.com",
                inline=opts.job_policy(partition), account=account)
            report.add(action, "IAM role", stack.job_role + (
                f" (policy: {_data_access(opts)})" if action == "updated" else ""))
        execution_role = instance_profile = None
        if stack.fargate:
            execution_role, action = permissions.ensure_role(
                iam, stack, stack.execution_role, "ecs-tasks.amazonaws.com",
                managed=(managed + EXECUTION_POLICY,), account=account)
            report.add(action, "IAM role", stack.execution_role)
        else:
            _, action = permissions.ensure_role(iam, stack, stack.instance_role,
                                                "ec2.amazonaws.com",
                                                managed=(managed + INSTANCE_POLICY,))
            report.add(action, "IAM role", stack.instance_role)
            instance_profile, action = permissions.ensure_instance_profile(
                iam, stack, stack.instance_role)
            report.add(action, "instance profile", stack.instance_role)
        service_role, name, action = permissions.service_role(iam)
        report.add(action, "service-linked role", name)
    with provisioning(f"provisioning AWS Batch for stack {stack.name}"):
        subnets, groups = compute.network(clients, opts)
        template = None
        if not stack.fargate:  # Fargate tasks never see an instance's metadata
            template, action = compute.ensure_launch_template(clients("ec2"), stack)
            report.add(action, "launch template", template)
        batch = clients("batch")
        env = compute.ensure_compute_environment(
            batch, stack, compute.compute_resources(opts, subnets, groups, instance_profile,
                                                    template),
            service_role, report, on_running)
        queue = compute.ensure_job_queue(batch, stack, env["computeEnvironmentName"], report)
    report.deployment = _deployment(stack, queue, env, job_role, execution_role)
    return report


def deployment(settings: Settings | AwsSettings) -> Deployment:
    """The stack's queue and roles as deployed: found with four requests, or made or repaired
    by ``up`` (a changed read_buckets/write_buckets: the job role's policy only, in place).
    A compute environment that differs from the config is used as it is, saying what
    differs: only ``spmd aws up`` changes it, never a map under running work."""
    opts = _options(settings)
    clients, stack = opts.clients(), opts.stack
    why = "first use"
    with provisioning(f"looking up stack {stack.name}"):
        batch = clients("batch")
        queue = compute.live_queue(batch, stack.job_queue)
        env = compute.live_environment(batch, stack.compute_environment) if queue else None
        ready = queue is not None and env is not None and \
            (queue.get("status"), queue.get("state")) == ("VALID", "ENABLED") and \
            (env.get("status"), env.get("state")) == ("VALID", "ENABLED")
        if env is not None and env.get("status") == "INVALID":
            why = f"compute environment {stack.compute_environment} is INVALID"
        if ready and stack.owns(env.get("tags")):
            drift = compute.config_drift(opts, env)
            if drift:  # changing it here could end others' running jobs
                log.warning("the config differs from compute environment %s (%s); this map runs "
                            "on it as it is. Run `spmd aws up` to apply the config (it refuses "
                            "while jobs run: `--wait` for them, `--force` to end them)",
                            stack.compute_environment, compute._said(drift))
        if ready:
            iam = clients("iam")
            try:
                if opts.job_role:
                    job_role = permissions.role_arn(iam, opts.job_role)
                else:
                    role = iam.get_role(RoleName=stack.job_role)["Role"]
                    job_role = role["Arn"]
                    # read_buckets/write_buckets changed: the policy follows (IAM only)
                    if stack.owns(role.get("Tags") or []) and permissions.inline_policy(
                            iam, stack.job_role) != permissions.canonical(
                            opts.job_policy(permissions.partition(clients.region))):
                        ready, why = False, ("the job role's policy differs from the config "
                                             f"({_data_access(opts)})")
                execution_role = (permissions.role_arn(iam, stack.execution_role)
                                  if stack.fargate else None)
            except Exception as exc:
                if error_code(exc) != "NoSuchEntity":
                    raise
                ready = False
    if ready:
        return _deployment(stack, queue, env, job_role, execution_role)
    log.warning("setting up AWS resources for stack %r (%s; `spmd aws up` does this "
                "explicitly)", stack.name, why)
    report = up(opts)
    log.warning("%s", report)
    return report.deployment


def _paginate(client, operation: str, key: str, **request):
    for page in client.get_paginator(operation).paginate(**request):
        yield from page.get(key, ())


def down(settings: Settings | AwsSettings, *, keep_bucket: bool = False) -> Report:
    """Delete every resource tagged ``spmd:stack=<stack>``; nothing else is touched.

    keep_bucket keeps the job-data bucket (and its results) even when spmd created it.
    """
    opts = _options(settings)
    clients, stack = opts.clients(), opts.stack
    report = Report(stack.name)
    with provisioning(f"removing AWS Batch resources of stack {stack.name}"):
        batch = clients("batch")
        queues = [q for q in _paginate(batch, "describe_job_queues", "jobQueues")
                  if stack.owns(q.get("tags")) and q.get("status") not in compute.GONE]
        for queue in queues:
            compute.disable_and_delete(batch, "job queue", queue["jobQueueName"])
            report.add("deleted", "job queue", queue["jobQueueName"])
        environments = [e for e in _paginate(batch, "describe_compute_environments",
                                             "computeEnvironments")
                        if stack.owns(e.get("tags")) and e.get("status") not in compute.GONE]
        for env in environments:
            compute.disable_and_delete(batch, "compute environment", env["computeEnvironmentName"])
            report.add("deleted", "compute environment", env["computeEnvironmentName"])
        for definition in _paginate(batch, "describe_job_definitions", "jobDefinitions",
                                    status="ACTIVE"):
            if stack.owns(definition.get("tags")):
                batch.deregister_job_definition(jobDefinition=definition["jobDefinitionArn"])
                report.add("deregistered", "job definition",
                           f"{definition['jobDefinitionName']}:{definition['revision']}")
    with provisioning(f"removing launch template {stack.launch_template}"):
        report.add(compute.delete_launch_template(clients("ec2"), stack), "launch template",
                   stack.launch_template)
    with provisioning(f"removing log group {stack.log_group}"):
        report.add(_delete_log_group(clients("logs"), stack), "log group", stack.log_group)
    with provisioning(f"removing the secrets of stack {stack.name} from Secrets Manager"):
        for name in _delete_secrets(clients("secretsmanager"), stack):
            report.add("deleted", "secret", name)
    with provisioning(f"removing IAM resources of stack {stack.name}"):
        for kind, name in permissions.delete_iam(clients("iam"), stack):
            report.add("deleted", kind, name)
    with provisioning(f"removing ECR repository {stack.repository}"):
        from .registry import delete_repository
        report.add(delete_repository(clients, stack), "ECR repository", stack.repository)
    with provisioning(f"removing bucket {opts.bucket}"):
        report.add(_delete_bucket(clients, opts.bucket, stack, keep_bucket), "bucket", opts.bucket)
    return report


def _delete_secrets(manager, stack: Stack) -> list[str]:
    """Delete the job secrets spmd made (named ``<stack>/...`` and tagged with the stack) that
    are left: a job nobody watched to its end keeps them (spmd_aws.secrets). No recovery
    window: they are the values of a job that can no longer run."""
    deleted = []
    pages = manager.get_paginator("list_secrets").paginate(
        Filters=[{"Key": "name", "Values": [f"{stack.name}/"]}])
    for secret in (s for page in pages for s in page.get("SecretList", ())):
        if secret["Name"].startswith(f"{stack.name}/") and stack.owns(secret.get("Tags") or []):
            try:
                manager.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
            deleted.append(secret["Name"])
    return deleted


def _delete_bucket(clients: Clients, bucket: str, stack: Stack, keep: bool) -> str:
    s3 = clients("s3")
    try:
        tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    except Exception as exc:
        if error_code(exc) in ("NoSuchBucket", "404"):
            return "absent"
        if error_code(exc) != "NoSuchTagSet":
            raise
        tags = []
    if not stack.owns(tags):
        return "kept (not tagged by this stack)"
    if keep:
        return "kept (keep_bucket)"
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objects = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                   for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for i in range(0, len(objects), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[i:i + 1000], "Quiet": True})
    s3.delete_bucket(Bucket=bucket)
    return "deleted"
