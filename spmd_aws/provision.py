"""Provisioning: ``up`` makes what a stack needs, ``down`` removes what carries its tag.

    up(settings)    bucket ─ ECR repository ─ IAM roles + instance profile ─ networking
                    ─ compute environment (EC2, spot or Fargate) ─ job queue
    down(settings)  job queues ─ compute environments ─ job definitions ─ IAM ─ ECR
                    ─ bucket, each only when tagged spmd:stack=<stack>

Both are idempotent: what exists is found and reported, never made twice. ``deployment``
is what the queue calls before its first submit: a quick look (two or three requests),
and ``up`` only when something is missing.

Least privilege: tasks run as the job role, which may read and write objects under this
bucket's ``jobs/`` prefix and list only that prefix; no keys are ever put in an image or
a job's environment. The EC2 hosts get AWS's managed ECS instance policy (pull images,
write logs, talk to ECS); Fargate tasks get AWS's managed task execution policy.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from spmd.config import Settings
from spmd.errors import StoreError

from .aws import AwsError, Clients, boundary, error_code
from .config import AwsSettings
from .stack import Stack

log = logging.getLogger("spmd")

WAIT_SECONDS = 600
INSTANCE_POLICY = "service-role/AmazonEC2ContainerServiceforEC2Role"
EXECUTION_POLICY = "service-role/AmazonECSTaskExecutionRolePolicy"
BATCH_SERVICE = "batch.amazonaws.com"


class ProvisionError(AwsError):
    """Provisioning could not make or remove a resource."""


@dataclass(frozen=True)
class Deployment:
    """What a job needs from a provisioned stack."""

    job_queue: str
    job_role: str
    platform: str = "EC2"  # or FARGATE
    execution_role: str | None = None


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


def _partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else \
        "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _trust(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


def job_policy(bucket: str, prefix: str, partition: str = "aws") -> dict:
    """The job role's only permissions: objects under ``<prefix>jobs/`` of this bucket.

    Listing that prefix is allowed so that a missing object reads as 404, not 403.
    """
    jobs = f"{prefix.strip('/') + '/' if prefix.strip('/') else ''}jobs/"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "JobData", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:{partition}:s3:::{bucket}/{jobs}*"},
        {"Sid": "ListJobData", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:{partition}:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": f"{jobs}*"}}},
    ]}


def _wait(what: str, check: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.5
    while not check():
        if time.monotonic() > deadline:
            raise ProvisionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 10)


# -- the pieces, each idempotent ------------------------------------------------------

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
        jobs = f"{prefix.strip('/') + '/' if prefix.strip('/') else ''}jobs/"
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
            "ID": "spmd-expire-jobs", "Status": "Enabled", "Filter": {"Prefix": jobs},
            "Expiration": {"Days": retention_days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})
    log.warning("created bucket s3://%s (job data expires after %d days)", bucket, retention_days)
    return "created"


def _ensure_role(iam, stack: Stack, name: str, service: str, *, inline: dict | None = None,
                 managed: tuple[str, ...] = (), report: Report) -> str:
    """The role's ARN; created with its trust, tags and policies when missing.

    A role of that name that does not carry the stack's tag is used as it is, never changed.
    """
    try:
        role = iam.get_role(RoleName=name)["Role"]
        ours = stack.owns(role.get("Tags") or [])
        action = "found" if ours else "found (not tagged by this stack; left as it is)"
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        role = iam.create_role(RoleName=name, Path=stack.iam_path, Tags=stack.tag_list,
                               AssumeRolePolicyDocument=_trust(service),
                               Description=f"spmd stack {stack.name}")["Role"]
        ours, action = True, "created"
        for policy in managed:
            iam.attach_role_policy(RoleName=name, PolicyArn=policy)
    if inline is not None and ours:  # kept current on every up: it follows the configured bucket
        iam.put_role_policy(RoleName=name, PolicyName="spmd", PolicyDocument=json.dumps(inline))
    report.add(action, "IAM role", name)
    return role["Arn"]


def _ensure_instance_profile(iam, stack: Stack, role: str, report: Report) -> str:
    name = stack.instance_role
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        ours = stack.owns(profile.get("Tags") or [])
        action = "found" if ours else "found (not tagged by this stack; left as it is)"
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        profile = iam.create_instance_profile(InstanceProfileName=name, Path=stack.iam_path,
                                              Tags=stack.tag_list)["InstanceProfile"]
        ours, action = True, "created"
    if ours and not any(r["RoleName"] == role for r in profile.get("Roles", ())):
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
    report.add(action, "instance profile", name)
    return profile["Arn"]


def _service_role(iam, report: Report) -> str:
    """AWS Batch's service-linked role: one per account, AWS's own; ``down`` never deletes it."""
    roles = iam.list_roles(PathPrefix=f"/aws-service-role/{BATCH_SERVICE}/")["Roles"]
    if roles:
        report.add("found", "service-linked role", roles[0]["RoleName"])
        return roles[0]["Arn"]
    role = iam.create_service_linked_role(AWSServiceName=BATCH_SERVICE)["Role"]
    report.add("created", "service-linked role", role["RoleName"])
    return role["Arn"]


def _network(clients: Clients, opts: AwsSettings) -> tuple[list[str], list[str]]:
    """Subnets and security groups: the configured ones, or the default VPC's."""
    if opts.subnets and opts.security_groups:
        return list(opts.subnets), list(opts.security_groups)
    ec2 = clients("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise ProvisionError(f"region {clients.region} has no default VPC; set subnets and "
                             "security_groups in the profile")
    vpc = vpcs[0]["VpcId"]
    subnets = list(opts.subnets) or [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    groups = list(opts.security_groups) or [g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]]
    if not subnets or not groups:
        raise ProvisionError(f"the default VPC {vpc} has no subnets or default security group; "
                             "set subnets and security_groups in the profile")
    return subnets, groups


def _compute_resources(opts: AwsSettings, subnets, groups, instance_profile: str | None) -> dict:
    stack = opts.stack
    resources = {"maxvCpus": int(opts.max_vcpus), "subnets": subnets, "securityGroupIds": groups}
    if stack.fargate:
        resources["type"] = "FARGATE_SPOT" if stack.spot else "FARGATE"
        return resources
    resources.update({
        "type": "SPOT" if stack.spot else "EC2",
        "allocationStrategy": ("SPOT_PRICE_CAPACITY_OPTIMIZED" if stack.spot
                               else "BEST_FIT_PROGRESSIVE"),
        "minvCpus": 0, "desiredvCpus": 0, "instanceTypes": list(opts.instance_types),
        "instanceRole": instance_profile, "tags": dict(stack.tags)})
    return resources


def _ensure_compute_environment(batch, opts: AwsSettings, resources: dict, service_role: str,
                                report: Report) -> str:
    name = opts.stack.compute_environment
    found = batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
    if found:
        env = found[0]
        current, wanted = env.get("computeResources", {}).get("maxvCpus"), resources["maxvCpus"]
        if current is not None and current != wanted and opts.stack.owns(env.get("tags")):
            batch.update_compute_environment(computeEnvironment=name,
                                             computeResources={"maxvCpus": wanted})
            report.add("updated", "compute environment", f"{name} (maxvCpus {wanted})")
        else:
            report.add("found", "compute environment", name)
    else:
        # A new instance profile takes a few seconds to become usable by Batch: retry.
        for attempt in range(12):
            try:
                batch.create_compute_environment(
                    computeEnvironmentName=name, type="MANAGED", state="ENABLED",
                    computeResources=resources, serviceRole=service_role, tags=opts.stack.tags)
                break
            except Exception as exc:
                if error_code(exc) != "ClientException" or attempt == 11 or \
                        "role" not in str(exc).lower() and "profile" not in str(exc).lower():
                    raise
                time.sleep(5)
        report.add("created", "compute environment", name)

    def valid() -> bool:
        [env] = batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
        if env.get("status") == "INVALID":
            raise ProvisionError(f"compute environment {name} is INVALID: "
                                 f"{env.get('statusReason')}")
        return env.get("status") == "VALID"
    _wait(f"compute environment {name}", valid)
    return name


def _ensure_job_queue(batch, stack: Stack, compute_environment: str, report: Report) -> str:
    name = stack.job_queue
    found = batch.describe_job_queues(jobQueues=[name])["jobQueues"]
    if found:
        queue = found[0]
        if queue.get("state") != "ENABLED" and stack.owns(queue.get("tags")):
            batch.update_job_queue(jobQueue=name, state="ENABLED")
            report.add("enabled", "job queue", name)
        else:
            report.add("found", "job queue", name)
    else:
        order = [{"order": 1, "computeEnvironment": compute_environment}]
        batch.create_job_queue(jobQueueName=name, state="ENABLED", priority=1, tags=stack.tags,
                               computeEnvironmentOrder=order)
        report.add("created", "job queue", name)

    def valid() -> bool:
        queue = batch.describe_job_queues(jobQueues=[name])["jobQueues"][0]
        if queue.get("status") == "INVALID":
            raise ProvisionError(f"job queue {name} is INVALID: {queue.get('statusReason')}")
        return queue.get("status") == "VALID"
    _wait(f"job queue {name}", valid)
    return batch.describe_job_queues(jobQueues=[name])["jobQueues"][0]["jobQueueArn"]


def _role_arn(iam, name_or_arn: str) -> str:
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return iam.get_role(RoleName=name_or_arn)["Role"]["Arn"]


# -- up, down, deployment ----------------------------------------------------------

def _options(settings: Settings | AwsSettings) -> AwsSettings:
    return settings if isinstance(settings, AwsSettings) else AwsSettings.from_settings(settings)


def up(settings: Settings | AwsSettings) -> Report:
    """Make every resource the stack needs that is missing; a second call creates nothing."""
    opts = _options(settings)
    clients, stack = opts.clients(), opts.stack
    report = Report(stack.name)
    report.add(ensure_bucket(clients, opts.bucket, stack, opts.retention_days, opts.prefix),
               "bucket", opts.bucket)
    from .registry import ensure_repository
    report.add(ensure_repository(clients, stack)[1], "ECR repository", stack.repository)
    partition = _partition(clients.region)
    managed = f"arn:{partition}:iam::aws:policy/"
    with boundary(ProvisionError, f"provisioning IAM roles of stack {stack.name}"):
        iam = clients("iam")
        if opts.job_role:
            job_role = _role_arn(iam, opts.job_role)
            report.add("configured", "IAM role", job_role)
        else:
            job_role = _ensure_role(iam, stack, stack.job_role, "ecs-tasks.amazonaws.com",
                                    inline=job_policy(opts.bucket, opts.prefix, partition),
                                    report=report)
        execution_role = instance_profile = None
        if stack.fargate:
            execution_role = _ensure_role(iam, stack, stack.execution_role,
                                          "ecs-tasks.amazonaws.com",
                                          managed=(managed + EXECUTION_POLICY,), report=report)
        else:
            _ensure_role(iam, stack, stack.instance_role, "ec2.amazonaws.com",
                         managed=(managed + INSTANCE_POLICY,), report=report)
            instance_profile = _ensure_instance_profile(iam, stack, stack.instance_role, report)
        service_role = _service_role(iam, report)
    with boundary(ProvisionError, f"provisioning AWS Batch for stack {stack.name}"):
        subnets, groups = _network(clients, opts)
        batch = clients("batch")
        compute = _ensure_compute_environment(
            batch, opts, _compute_resources(opts, subnets, groups, instance_profile),
            service_role, report)
        queue = _ensure_job_queue(batch, stack, compute, report)
    report.deployment = Deployment(queue, job_role, "FARGATE" if stack.fargate else "EC2",
                                   execution_role)
    return report


def deployment(settings: Settings | AwsSettings) -> Deployment:
    """The stack's queue and roles: found with a few requests, or provisioned by ``up``."""
    opts = _options(settings)
    clients, stack = opts.clients(), opts.stack
    with boundary(ProvisionError, f"looking up stack {stack.name}"):
        queues = clients("batch").describe_job_queues(jobQueues=[stack.job_queue])["jobQueues"]
        ready = bool(queues) and (queues[0].get("status"), queues[0].get("state")) == \
            ("VALID", "ENABLED")
        if ready:
            iam = clients("iam")
            try:
                job_role = _role_arn(iam, opts.job_role or stack.job_role)
                execution_role = _role_arn(iam, stack.execution_role) if stack.fargate else None
            except Exception as exc:
                if error_code(exc) != "NoSuchEntity":
                    raise
                ready = False
    if ready:
        return Deployment(queues[0]["jobQueueArn"], job_role,
                          "FARGATE" if stack.fargate else "EC2", execution_role)
    log.warning("setting up AWS resources for stack %r (first use; `spmd aws up` does this "
                "explicitly)", stack.name)
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
    with boundary(ProvisionError, f"removing AWS Batch resources of stack {stack.name}"):
        batch = clients("batch")
        queues = [q for q in _paginate(batch, "describe_job_queues", "jobQueues")
                  if stack.owns(q.get("tags"))]
        for queue in queues:
            _disable_and_delete(batch, "job queue", queue["jobQueueName"], report)
        environments = [e for e in _paginate(batch, "describe_compute_environments",
                                             "computeEnvironments") if stack.owns(e.get("tags"))]
        for env in environments:
            _disable_and_delete(batch, "compute environment", env["computeEnvironmentName"], report)
        for definition in _paginate(batch, "describe_job_definitions", "jobDefinitions",
                                    status="ACTIVE"):
            if stack.owns(definition.get("tags")):
                batch.deregister_job_definition(jobDefinition=definition["jobDefinitionArn"])
                report.add("deregistered", "job definition",
                           f"{definition['jobDefinitionName']}:{definition['revision']}")
    with boundary(ProvisionError, f"removing IAM resources of stack {stack.name}"):
        _delete_iam(clients("iam"), stack, report)
    with boundary(ProvisionError, f"removing ECR repository {stack.repository}"):
        from .registry import delete_repository
        report.add(delete_repository(clients, stack), "ECR repository", stack.repository)
    with boundary(ProvisionError, f"removing bucket {opts.bucket}"):
        report.add(_delete_bucket(clients, opts.bucket, stack, keep_bucket), "bucket", opts.bucket)
    return report


def _disable_and_delete(batch, kind: str, name: str, report: Report) -> None:
    queue = kind == "job queue"
    def describe() -> list[dict]:
        if queue:
            return batch.describe_job_queues(jobQueues=[name])["jobQueues"]
        return batch.describe_compute_environments(
            computeEnvironments=[name])["computeEnvironments"]
    if describe()[0].get("state") != "DISABLED":
        if queue:
            batch.update_job_queue(jobQueue=name, state="DISABLED")
        else:
            batch.update_compute_environment(computeEnvironment=name, state="DISABLED")
    _wait(f"{kind} {name} to be disabled",
          lambda: describe()[0].get("status") not in ("CREATING", "UPDATING"))
    if queue:
        batch.delete_job_queue(jobQueue=name)
    else:
        batch.delete_compute_environment(computeEnvironment=name)
    _wait(f"{kind} {name} to be deleted",
          lambda: not [x for x in describe() if x.get("status") != "DELETED"])
    report.add("deleted", kind, name)


def _delete_iam(iam, stack: Stack, report: Report) -> None:
    for profile in list(_paginate(iam, "list_instance_profiles", "InstanceProfiles",
                                  PathPrefix=stack.iam_path)):
        name = profile["InstanceProfileName"]
        if not profile.get("Path", "").startswith(stack.iam_path):
            continue
        tags = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"].get("Tags")
        if not stack.owns(tags or []):
            continue
        for role in profile.get("Roles", ()):
            iam.remove_role_from_instance_profile(InstanceProfileName=name,
                                                  RoleName=role["RoleName"])
        iam.delete_instance_profile(InstanceProfileName=name)
        report.add("deleted", "instance profile", name)
    for role in list(_paginate(iam, "list_roles", "Roles", PathPrefix=stack.iam_path)):
        name = role["RoleName"]
        if not role.get("Path", "").startswith(stack.iam_path) or \
                not stack.owns(iam.list_role_tags(RoleName=name)["Tags"]):
            continue
        for policy in _paginate(iam, "list_attached_role_policies", "AttachedPolicies",
                                RoleName=name):
            iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        for policy in _paginate(iam, "list_role_policies", "PolicyNames", RoleName=name):
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        for profile in _paginate(iam, "list_instance_profiles_for_role", "InstanceProfiles",
                                 RoleName=name):
            iam.remove_role_from_instance_profile(
                InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
        iam.delete_role(RoleName=name)
        report.add("deleted", "IAM role", name)


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
