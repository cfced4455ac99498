"""IAM: the stack's roles and policies, and the IAM actions behind the API calls spmd makes.

    job role          <stack>-job        ecs-tasks may assume it; an inline policy "spmd":
                                         Get/PutObject under <prefix>jobs/, ListBucket of
                                         that prefix only (s3:prefix condition)
    instance role     <stack>-instance   + instance profile; AWS's ECS instance policy
    execution role    <stack>-execution  Fargate only; AWS's ECS task execution policy
    service-linked    AWSServiceRoleForBatch, AWS's own (created if missing, never deleted)

``actions(calls)`` turns the API operations the tests record into the IAM actions a caller
needs (``docs/aws.md`` lists them, generated, see ``tests/aws/test_aws_permissions.py``).
"""
from __future__ import annotations

import json
from typing import Iterable

from .aws import error_code
from .stack import Stack

BATCH_SERVICE = "batch.amazonaws.com"

#: IAM actions of API operations whose action is not ``<service>:<Operation>``
_RENAMED = {
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "ListObjectVersions"): ("s3:ListBucketVersions", "s3:DeleteObjectVersion"),  # down
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("s3", "DeleteObjects"): ("s3:DeleteObject",),
    ("s3", "PutPublicAccessBlock"): ("s3:PutBucketPublicAccessBlock",),
    ("s3", "PutBucketEncryption"): ("s3:PutEncryptionConfiguration",),
    ("s3", "PutBucketLifecycleConfiguration"): ("s3:PutLifecycleConfiguration",),
}
#: actions an operation needs besides its own: roles it passes to a service, tags it sets
_ALSO = {
    ("batch", "RegisterJobDefinition"): ("iam:PassRole", "batch:TagResource"),
    ("batch", "CreateComputeEnvironment"): ("iam:PassRole", "batch:TagResource"),
    ("batch", "CreateJobQueue"): ("batch:TagResource",),
    ("batch", "SubmitJob"): ("batch:TagResource",),
    ("iam", "AddRoleToInstanceProfile"): ("iam:PassRole",),
    ("iam", "CreateRole"): ("iam:TagRole",),
    ("iam", "CreateInstanceProfile"): ("iam:TagInstanceProfile",),
    ("ecr", "CreateRepository"): ("ecr:TagResource",),
    ("logs", "CreateLogGroup"): ("logs:TagResource",),
}
#: what ``docker push`` to ECR needs: the registry protocol, not API calls botocore sees
ECR_PUSH = ("ecr:BatchCheckLayerAvailability", "ecr:CompleteLayerUpload",
            "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart")


def _passes_role(service: str, operation: str, params: dict | None) -> bool:
    """UpdateComputeEnvironment passes roles only when it sets them (not to disable)."""
    if (service, operation) != ("batch", "UpdateComputeEnvironment"):
        return False
    return params is None or "serviceRole" in params or \
        "instanceRole" in (params.get("computeResources") or {})


def actions(calls: Iterable[tuple]) -> list[str]:
    """The sorted IAM actions behind API calls given as (botocore service name, operation)
    or (service, operation, request parameters)."""
    out: set[str] = set()
    for service, operation, *params in calls:
        out.update(_RENAMED.get((service, operation), (f"{service}:{operation}",)))
        out.update(_ALSO.get((service, operation), ()))
        if _passes_role(service, operation, params[0] if params else None):
            out.add("iam:PassRole")
    return sorted(out)


def partition(region: str) -> str:
    """The ARN partition of a region."""
    return "aws-cn" if region.startswith("cn-") else \
        "aws-us-gov" if region.startswith("us-gov-") else "aws"


def trust(service: str) -> str:
    """The trust policy letting an AWS service assume a role."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


def jobs_prefix(prefix: str) -> str:
    """The key prefix of job data in the bucket: ``<prefix>/jobs/`` or ``jobs/``."""
    return f"{prefix.strip('/') + '/' if prefix.strip('/') else ''}jobs/"


def job_policy(bucket: str, prefix: str, partition: str = "aws") -> dict:
    """The job role's only permissions: objects under ``<prefix>jobs/`` of this bucket.

    ListBucket is granted on that prefix only (an ``s3:prefix`` condition), so a task
    can list its job's keys. S3 answers a GetObject of a missing key with 403 unless the
    caller may list the bucket, and a prefix condition may not count for that: the
    store (``S3Store.get``) confirms a 403 with one listing of that very key, which this
    policy allows, and only then reads it as missing.
    """
    jobs = jobs_prefix(prefix)
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "JobData", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:{partition}:s3:::{bucket}/{jobs}*"},
        {"Sid": "ListJobData", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:{partition}:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": f"{jobs}*"}}},
    ]}


def ensure_role(iam, stack: Stack, name: str, service: str, *, inline: dict | None = None,
                managed: tuple[str, ...] = ()) -> tuple[str, str]:
    """(the role's ARN, what was done); created with its trust, tags and policies when missing.

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
                               AssumeRolePolicyDocument=trust(service),
                               Description=f"spmd stack {stack.name}")["Role"]
        ours, action = True, "created"
        for policy in managed:
            iam.attach_role_policy(RoleName=name, PolicyArn=policy)
    if inline is not None and ours:  # kept current on every up: it follows the configured bucket
        iam.put_role_policy(RoleName=name, PolicyName="spmd", PolicyDocument=json.dumps(inline))
    return role["Arn"], action


def ensure_instance_profile(iam, stack: Stack, role: str) -> tuple[str, str]:
    """(the instance profile's ARN, what was done), holding role."""
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
    return profile["Arn"], action


def service_role(iam) -> tuple[str, str, str]:
    """(ARN, name, what was done) of AWS Batch's service-linked role: one per account,
    AWS's own; ``down`` never deletes it."""
    roles = iam.list_roles(PathPrefix=f"/aws-service-role/{BATCH_SERVICE}/")["Roles"]
    if roles:
        return roles[0]["Arn"], roles[0]["RoleName"], "found"
    role = iam.create_service_linked_role(AWSServiceName=BATCH_SERVICE)["Role"]
    return role["Arn"], role["RoleName"], "created"


def role_arn(iam, name_or_arn: str) -> str:
    """The ARN of a role given by name or ARN."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return iam.get_role(RoleName=name_or_arn)["Role"]["Arn"]


def _paginate(client, operation: str, key: str, **request):
    for page in client.get_paginator(operation).paginate(**request):
        yield from page.get(key, ())


def delete_iam(iam, stack: Stack) -> list[tuple[str, str]]:
    """Delete the stack's instance profiles and roles (only those tagged with it, under its
    path); the (kind, name) of each one deleted."""
    deleted = []
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
        deleted.append(("instance profile", name))
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
        deleted.append(("IAM role", name))
    return deleted
