"""A Knot's secrets on AWS: Secrets Manager, read by Batch into the task's environment.

    deliver(job, secrets)   one CreateSecret per secret, <stack>/<job id>/<NAME>, tagged
                            (a file's content base64, for spmd.secrets.apply to write a
                            0600 file); the execution role made if missing (EC2 stacks
                            have none otherwise) and given GetSecretValue on exactly these
                            ARNs (PutRolePolicy spmd-secrets-<job>)
    job definition          containerProperties.secrets [{name, valueFrom: ARN}] and
                            executionRoleArn: the ECS agent reads the values as the task
                            starts; SubmitJob, containerOverrides and DescribeJobs hold
                            only the ARNs
    remove(handle)          when every task has ended (the first states() that sees it):
                            DeleteSecret (no recovery window) per secret, DeleteRolePolicy
"""
from __future__ import annotations

import base64
import json

from spmd.errors import ConfigError
from spmd.secrets import FILE_ENV, Secret

from .aws import AwsError, Clients, boundary, error_code
from .stack import Stack

#: Secrets Manager's largest SecretString (65,536 bytes), less base64's growth for files
MAX_BYTES = 65_536
EXECUTION_POLICY = "service-role/AmazonECSTaskExecutionRolePolicy"


def variable(secret: Secret) -> str:
    """The environment variable Batch fills from the secret."""
    return secret.name if secret.kind == "value" else FILE_ENV + secret.name


def text(secret: Secret) -> str:
    """What Secrets Manager keeps: the value, or the file's content base64-encoded."""
    data = secret.value if secret.kind == "value" else \
        base64.b64encode(secret.content()).decode()
    if len(data.encode()) > MAX_BYTES:
        raise ConfigError(f"Secret({secret.name!r}) is {len(data.encode())} bytes as a Secrets "
                          f"Manager secret{' (base64)' if secret.kind == 'file' else ''}; it "
                          f"holds at most {MAX_BYTES}: pass a smaller file, or data as an input")
    return data


def policy_name(job_id: str) -> str:
    return f"spmd-secrets-{job_id}"[:128]


def deliver(clients: Clients, stack: Stack, job_id: str, secrets: tuple[Secret, ...]) -> dict:
    """Create the job's secrets and let the execution role read exactly them; returns
    {"refs": [{name, valueFrom}], "role": execution role ARN, "policy": its policy name}."""
    from . import permissions
    texts = [(variable(s), text(s)) for s in secrets]  # every size checked before a call
    manager = clients("secretsmanager")
    refs: list[dict] = []
    with boundary(AwsError, f"creating the secrets of job {job_id} in Secrets Manager"):
        for name, data in texts:
            arn = manager.create_secret(
                Name=f"{stack.name}/{job_id}/{name}", SecretString=data,
                Description=f"spmd job {job_id}: deleted when the job has ended",
                Tags=[*stack.tag_list, {"Key": "spmd:job", "Value": job_id}])["ARN"]
            refs.append({"name": name, "valueFrom": arn})
    with boundary(AwsError, f"letting role {stack.execution_role} read job {job_id}'s secrets"):
        iam = clients("iam")
        partition = refs[0]["valueFrom"].split(":")[1]
        account = clients("sts").get_caller_identity()["Account"]
        role, _ = permissions.ensure_role(
            iam, stack, stack.execution_role, "ecs-tasks.amazonaws.com",
            managed=(f"arn:{partition}:iam::aws:policy/{EXECUTION_POLICY}",), account=account)
        document = {"Version": "2012-10-17", "Statement": [{
            "Sid": "JobSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
            "Resource": [r["valueFrom"] for r in refs]}]}
        iam.put_role_policy(RoleName=stack.execution_role, PolicyName=policy_name(job_id),
                            PolicyDocument=json.dumps(document))
    return {"refs": refs, "role": role, "policy": policy_name(job_id)}


def remove(clients: Clients, stack: Stack, delivered: dict) -> None:
    """Delete the job's secrets and the role's policy for them (what is gone already is fine)."""
    manager, iam = clients("secretsmanager"), clients("iam")
    with boundary(AwsError, "deleting a job's secrets from Secrets Manager"):
        for ref in delivered.get("refs", ()):
            try:
                manager.delete_secret(SecretId=ref["valueFrom"], ForceDeleteWithoutRecovery=True)
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
        try:
            iam.delete_role_policy(RoleName=stack.execution_role,
                                   PolicyName=delivered["policy"])
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
