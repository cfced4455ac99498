"""IAM: the stack's roles and policies, and the IAM actions behind the API calls spmd makes.

    job role          <stack>-job        ecs-tasks may assume it; an inline policy "spmd":
                                         Get/PutObject under <prefix>jobs/, ListBucket of
                                         that prefix only (s3:prefix condition); and the
                                         profile's data buckets: GetObject + ListBucket on
                                         read_buckets, PutObject on write_buckets
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
    ("sts", "GetCallerIdentity"): (),  # "No permissions are required" (AWS STS API Reference)
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
    ("ec2", "CreateLaunchTemplate"): ("ec2:CreateTags",),
}
#: what a map's own checks of data that lives elsewhere need on the client, made through
#: fsspec/s3fs (not spmd_aws's clients) with the user's credentials: a HEAD or a listing of
#: each s3 input (``spmd.remote.resolve``), and a probe object put and removed under each
#: ``outputs_to`` folder (``spmd.remote.check_writable``; a refused delete is ignored)
#: what a map needs (submit, watch, results, logs, cancel, a spent failure budget): the
#: `map` row of docs/aws.md's table, which test_aws_permissions.py records; `spmd doctor`
#: asks IAM's policy simulator about each
MAP_ACTIONS = (
    "batch:CancelJob", "batch:DescribeComputeEnvironments", "batch:DescribeJobDefinitions",
    "batch:DescribeJobQueues", "batch:DescribeJobs", "batch:ListJobs",
    "batch:RegisterJobDefinition", "batch:SubmitJob", "batch:TagResource", "batch:TerminateJob",
    "ec2:DescribeInstanceTypes", "ecr:DescribeImages", "ecr:DescribeRepositories",
    "ecr:GetAuthorizationToken", "iam:GetRole", "iam:GetRolePolicy", "iam:PassRole",
    "logs:DescribeLogGroups", "logs:GetLogEvents", "s3:GetObject", "s3:ListBucket",
    "s3:PutObject")
DATA_CHECKS = ("s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject")
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


def trust(service: str, account: str | None = None) -> str:
    """The trust policy letting an AWS service assume a role; with ``account``, only on behalf
    of that account (``aws:SourceAccount``: the confused-deputy guard of "Task IAM role",
    Amazon ECS developer guide)."""
    statement: dict = {"Effect": "Allow", "Principal": {"Service": service},
                       "Action": "sts:AssumeRole"}
    if account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def jobs_prefix(prefix: str) -> str:
    """The key prefix of job data in the bucket: ``<prefix>/jobs/`` or ``jobs/``."""
    return f"{prefix.strip('/') + '/' if prefix.strip('/') else ''}jobs/"


#: IAM's quota on the inline policies of one role, in characters (whitespace not counted)
INLINE_POLICY_LIMIT = 10_240


def split_bucket(entry: str) -> tuple[str, str]:
    """(bucket, key prefix without slashes at its ends) of ``bucket`` or ``bucket/prefix``."""
    bucket, _, prefix = entry.removeprefix("s3://").strip("/").partition("/")
    return bucket, prefix.strip("/")


def covers(entry: str, bucket: str, key: str) -> bool:
    """Whether a read_buckets/write_buckets entry covers ``key`` (an object's, or a folder's
    ending in "/") of bucket: the same bucket, and the entry's prefix is a whole-segment
    prefix of the key."""
    ebucket, prefix = split_bucket(entry)
    return ebucket == bucket and (not prefix or key == prefix or key.startswith(prefix + "/"))


def bucket_entries(entries) -> tuple[str, ...]:
    """The entries sorted, without duplicates or entries a broader one covers (so the policy
    does not change when only their order does, and grants nothing twice)."""
    parsed = sorted({split_bucket(e) for e in entries})
    kept = [(b, p) for b, p in parsed
            if not any((b2, p2) != (b, p) and covers(f"{b2}/{p2}", b, p + "/") for b2, p2 in parsed)]
    return tuple(f"{b}/{p}" if p else b for b, p in kept)


def _objects(partition: str, entry: str) -> str:
    bucket, prefix = split_bucket(entry)
    return f"arn:{partition}:s3:::{bucket}/{prefix + '/' if prefix else ''}*"


def job_policy(bucket: str, prefix: str, partition: str = "aws", *,
               read: tuple[str, ...] = (), write: tuple[str, ...] = ()) -> dict:
    """The job role's only permissions: objects under ``<prefix>jobs/`` of this bucket, and
    the data buckets the profile names (``read_buckets``, ``write_buckets``).

    ListBucket is granted on that prefix only (an ``s3:prefix`` condition), so a task
    can list its job's keys. S3 answers a GetObject of a missing key with 403 unless the
    caller may list the bucket, and a prefix condition may not count for that: the
    store (``S3Store.get``) confirms a 403 with one listing of that very key, which this
    policy allows, and only then reads it as missing.

    ``read`` entries (``bucket`` or ``bucket/prefix``) get GetObject on their objects and
    ListBucket limited to their prefix; ``write`` entries get PutObject only: a task publishes
    ``outputs_to`` files with puts (multipart uploads included), never a delete or a list.
    A ConfigError when the document is beyond IAM's quota for a role's inline policies.
    """
    jobs = jobs_prefix(prefix)
    statements = [
        {"Sid": "JobData", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:{partition}:s3:::{bucket}/{jobs}*"},
        {"Sid": "ListJobData", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:{partition}:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": f"{jobs}*"}}},
    ]
    read, write = bucket_entries(read), bucket_entries(write)
    if read:
        statements.append({"Sid": "ReadBuckets", "Effect": "Allow", "Action": "s3:GetObject",
                           "Resource": [_objects(partition, e) for e in read]})
        prefixes: dict[str, list[str]] = {}
        for entry in read:
            name, key = split_bucket(entry)
            prefixes.setdefault(name, []).append(key)
        for n, (name, keys) in enumerate(sorted(prefixes.items())):
            listing = {"Sid": f"ListReadBucket{n}", "Effect": "Allow", "Action": "s3:ListBucket",
                       "Resource": f"arn:{partition}:s3:::{name}"}
            if "" not in keys:  # only under the prefixes given
                listing["Condition"] = {"StringLike": {
                    "s3:prefix": [v for key in keys for v in (key, f"{key}/*")]}}
            statements.append(listing)
    if write:
        statements.append({"Sid": "WriteBuckets", "Effect": "Allow", "Action": "s3:PutObject",
                           "Resource": [_objects(partition, e) for e in write]})
    if any(split_bucket(e)[0] == bucket for e in (*read, *write)):
        # the data bucket named again: the secret of spmd_aws.signing stays out of reach
        from .signing import SECRET_KEY
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        statements.append({"Sid": "NoWriteSecret", "Effect": "Deny",
                           "Action": ["s3:GetObject", "s3:PutObject"],
                           "Resource": f"arn:{partition}:s3:::{bucket}/{base}{SECRET_KEY}"})
    policy = {"Version": "2012-10-17", "Statement": statements}
    size = len(json.dumps(policy, separators=(",", ":")))
    if size > INLINE_POLICY_LIMIT:
        from spmd.errors import ConfigError
        raise ConfigError(f"read_buckets and write_buckets make a job role policy of {size} "
                          f"characters, beyond IAM's {INLINE_POLICY_LIMIT} for a role's inline "
                          "policies; list fewer entries (a bucket instead of many of its "
                          "prefixes)", key="read_buckets")
    return policy


def canonical(policy) -> dict | None:
    """A policy document in one form, for comparing what IAM holds with what the config says:
    parsed when text, each Action, Resource and condition value as a sorted list."""
    if policy is None:
        return None
    if isinstance(policy, str):  # IAM's API gives it URL-encoded; boto3 usually decodes it
        from urllib.parse import unquote
        try:
            policy = json.loads(policy if policy.lstrip().startswith("{") else unquote(policy))
        except ValueError:  # not JSON (YAML from CloudFormation): differs from any of ours
            return {"unparsed": policy}

    def listed(value):
        return sorted(value) if isinstance(value, list) else [value]
    statements = []
    for statement in policy.get("Statement", ()):
        statement = dict(statement)
        for field in ("Action", "Resource"):
            if field in statement:
                statement[field] = listed(statement[field])
        if "Condition" in statement:
            statement["Condition"] = {op: {k: listed(v) for k, v in values.items()}
                                      for op, values in statement["Condition"].items()}
        statements.append(statement)
    return {"Version": policy.get("Version"),
            "Statement": sorted(statements, key=lambda s: json.dumps(s, sort_keys=True))}


def inline_policy(iam, role: str, name: str = "spmd") -> dict | None:
    """The role's inline policy ``name`` as IAM holds it (canonical), None when it has none."""
    try:
        return canonical(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return None


def ensure_role(iam, stack: Stack, name: str, service: str, *, inline: dict | None = None,
                managed: tuple[str, ...] = (), account: str | None = None) -> tuple[str, str]:
    """(the role's ARN, what was done); created with its trust, tags and policies when missing.

    The inline policy follows the config (the bucket, read_buckets, write_buckets): it is
    read, and put again only when it differs ("updated"); that is IAM alone, never the
    compute environment, so running jobs go on. So does its trust policy (``account``: only
    that account's requests may have the service assume it). A role of that name that does
    not carry the stack's tag is used as it is, never changed.
    """
    try:
        role = iam.get_role(RoleName=name)["Role"]
        ours = stack.owns(role.get("Tags") or [])
        action = "found" if ours else "found (not tagged by this stack; left as it is)"
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        role = iam.create_role(RoleName=name, Path=stack.iam_path, Tags=stack.tag_list,
                               AssumeRolePolicyDocument=trust(service, account),
                               Description=f"spmd stack {stack.name}")["Role"]
        ours, action = True, "created"
        for policy in managed:
            iam.attach_role_policy(RoleName=name, PolicyArn=policy)
    wanted = json.loads(trust(service, account))
    if ours and action != "created" and canonical(role.get("AssumeRolePolicyDocument")) != \
            canonical(wanted):
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(wanted))
        action = "updated"
    if inline is not None and ours and inline_policy(iam, name) != canonical(inline):
        iam.put_role_policy(RoleName=name, PolicyName="spmd", PolicyDocument=json.dumps(inline))
        if action == "found":
            action = "updated"
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
