"""The names and tags of every AWS resource one spmd stack owns.

A stack is a name (``stack`` in the config, default ``spmd``). Each resource is named
from it and tagged ``spmd:stack=<stack>``; ``down`` deletes only resources that carry
that tag, so a resource that merely has a similar name is never touched.

    bucket                 <bucket from the config>        (job data; lifecycle expires jobs/)
    ECR repository         <stack>-tasks                   (task images, tagged by content hash)
    IAM path               /spmd/<stack>/                  (every role and instance profile)
    job role               <stack>-job                     (tasks: jobs/, read_buckets, write_buckets)
    instance role/profile  <stack>-instance                (ECS agent on the EC2 hosts)
    execution role         <stack>-execution               (Fargate only: pull image, write logs)
    compute environment    <stack>-<kind>                  kind: ec2, spot, fargate, fargate-spot
    job queue              <stack>-<kind>
    job definitions        <stack>-<content hash>          (one per image + resources)
    log group              /spmd/<stack>/tasks             (the tasks' logs; a retention)
    launch template        <stack>-instances               (EC2: IMDSv2, hop limit 1)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

TAG_KEY = "spmd:stack"
CONTENT_TAG = "spmd:content"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")


def stack_name(value) -> str:
    """Config parser: a stack name usable in every AWS resource name."""
    if not isinstance(value, str) or not _NAME.match(value.strip()):
        raise ValueError("expected 2-32 lowercase letters, digits or hyphens, starting with a "
                         "letter (it is part of bucket-safe resource names)")
    return value.strip()


@dataclass(frozen=True)
class Stack:
    """Resource names and tags of one stack; ``kind`` picks the compute (ec2, spot, fargate...)."""

    name: str = "spmd"
    spot: bool = False
    fargate: bool = False

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.name}

    @property
    def tag_list(self) -> list[dict[str, str]]:
        """The tags in the Key/Value list form IAM and S3 take."""
        return [{"Key": k, "Value": v} for k, v in self.tags.items()]

    def owns(self, tags) -> bool:
        """Whether a resource with these tags (a dict or a Key/Value list) is this stack's."""
        if isinstance(tags, list):
            tags = {t.get("Key", t.get("key")): t.get("Value", t.get("value")) for t in tags}
        return (tags or {}).get(TAG_KEY) == self.name

    @property
    def kind(self) -> str:
        if self.fargate:
            return "fargate-spot" if self.spot else "fargate"
        return "spot" if self.spot else "ec2"

    @property
    def repository(self) -> str:
        return f"{self.name}-tasks"

    @property
    def iam_path(self) -> str:
        return f"/spmd/{self.name}/"

    @property
    def job_role(self) -> str:
        return f"{self.name}-job"

    @property
    def instance_role(self) -> str:
        return f"{self.name}-instance"

    @property
    def execution_role(self) -> str:
        return f"{self.name}-execution"

    @property
    def compute_environment(self) -> str:
        return f"{self.name}-{self.kind}"

    @property
    def job_queue(self) -> str:
        return f"{self.name}-{self.kind}"

    @property
    def launch_template(self) -> str:
        """The EC2 launch template of the instances (instance metadata blocked for tasks)."""
        return f"{self.name}-instances"

    @property
    def log_group(self) -> str:
        return f"/spmd/{self.name}/tasks"

    def job_definition(self, content_hash: str) -> str:
        return f"{self.name}-{content_hash}"
