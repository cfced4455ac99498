"""The AWS backend's configuration keys, and the settings they resolve to.

Keys shared with the local backend (``max_vcpus``, ``max_memory``) use the same parser
and no default here, so neither backend's default leaks into the other.
"""
from __future__ import annotations

from dataclasses import dataclass

from spmd import config
from spmd.config import Key, Settings
from spmd.errors import ConfigError

from . import architectures
from .aws import Clients
from .stack import Stack, stack_name

DEFAULT_MAX_VCPUS = 256
MEMORY_PER_VCPU = 8 * 2**30  # the r instance family's ratio; max_memory overrides
MAX_ATTEMPTS = 10  # AWS Batch's limit on retryStrategy.attempts


def bucket_path(value) -> str:
    """Config parser: ``name`` or ``name/key/prefix``."""
    text = config.text(value)
    if text.startswith("s3://"):
        text = text[len("s3://"):]
    name = text.split("/", 1)[0]
    if not 3 <= len(name) <= 63 or not all(c.islower() or c.isdigit() or c in "-." for c in name):
        raise ValueError("expected an S3 bucket name (3-63 lowercase letters, digits, '-' or '.'), "
                         "optionally followed by /a/key/prefix")
    return text.rstrip("/")


def bucket_list(value) -> tuple[str, ...]:
    """Config parser: a list of ``bucket`` or ``bucket/prefix`` entries (``s3://`` allowed)."""
    entries = config.string_list(value)
    out = []
    for entry in entries:
        try:
            out.append(bucket_path(entry))
        except ValueError as exc:
            raise ValueError(f"{entry!r}: {exc}") from None
    return tuple(out)


def architecture(value) -> str:
    """Config parser: the CPU architecture of the tasks, ``x86_64`` or ``arm64``."""
    text = config.text(value).lower()
    text = {"amd64": "x86_64", "aarch64": "arm64"}.get(text, text)
    if text not in ("x86_64", "arm64"):
        raise ValueError("expected x86_64 or arm64 (arm64: Graviton instance types)")
    return text


KEYS: tuple[Key, ...] = (
    Key("region", config.text, "AWS region of every resource (default: the AWS CLI's)"),
    Key("bucket", bucket_path, "S3 bucket (optionally bucket/prefix) holding job data; "
        "created if missing"),
    Key("aws_profile", config.text, "AWS CLI profile to take credentials from"),
    Key("endpoint_url", config.text, "URL of every AWS API instead of AWS's own (a stand-in "
        "such as moto or LocalStack); tasks use it too"),
    Key("stack", stack_name, "name of the AWS resources spmd creates and tags", "spmd"),
    Key("spot", config.boolean, "run on spot capacity (cheaper, may be interrupted)", False),
    Key("fargate", config.boolean, "run on Fargate instead of EC2 instances", False),
    Key("max_vcpus", config.positive_float, "CPUs all running tasks may use together "
        "(local default: the engine's; aws default: 256)"),
    Key("max_memory", config.memory, "memory all running tasks may use together (local default: "
        "the engine's; aws default: 8GiB per vCPU of max_vcpus)"),
    Key("instance_types", config.string_list, "EC2 instance types of the compute environment "
        "(default: optimal; default_arm64 with architecture = \"arm64\")"),
    Key("subnets", config.string_list, "subnet ids for the tasks (default: the default VPC's)"),
    Key("security_groups", config.string_list, "security group ids for the tasks (default: the "
        "default VPC's default group)"),
    Key("gpus", config.positive_int, "GPUs each task gets (needs GPU instance_types)"),
    Key("job_role", config.text, "IAM role (name or ARN) tasks run as, instead of the one spmd "
        "creates"),
    Key("registry", config.text, "address to push and pull task images instead of the account's "
        "ECR endpoint (a private mirror, a VPC endpoint name, a test registry)"),
    Key("retention_days", config.positive_int, "days job data stays in a bucket spmd created", 30),
    Key("price_per_vcpu_hour", config.positive_float, "USD per vCPU-hour for the run report's "
        "cost estimate (default: spmd_aws.cost's on-demand table)"),
    Key("architecture", architecture, "CPU architecture tasks run on and "
        "images are built for; arm64 means Graviton instance types", "x86_64"),
    Key("read_buckets", bucket_list, "S3 buckets (or bucket/prefix) tasks may read as the job "
        "role: spmd.File(\"s3://...\") inputs; `spmd aws up` grants GetObject and ListBucket"),
    Key("write_buckets", bucket_list, "S3 buckets (or bucket/prefix) tasks may write as the job "
        "role: map(outputs_to=\"s3://...\"); `spmd aws up` grants PutObject"),
)


@dataclass(frozen=True)
class AwsSettings:
    """The AWS backend's resolved settings."""

    bucket: str
    prefix: str = ""
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    stack: Stack = Stack()
    max_vcpus: float = DEFAULT_MAX_VCPUS
    max_memory: int | None = None
    instance_types: tuple[str, ...] = ("optimal",)
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    gpus: int | None = None
    job_role: str | None = None
    registry: str | None = None
    retention_days: int = 30
    architecture: str = "x86_64"
    read_buckets: tuple[str, ...] = ()
    write_buckets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> "AwsSettings":
        path = settings.get("bucket")
        if not path:
            raise ConfigError("the aws backend needs a bucket for job data: add bucket = "
                              "\"my-lab-spmd\" to the profile (it is created if missing)",
                              key="bucket")
        bucket, _, prefix = path.partition("/")
        arch = settings.get("architecture", "x86_64")
        # "optimal" holds only x86_64 families: Graviton has a default of its own
        default_types = ("default_arm64",) if arch == "arm64" else ("optimal",)
        instance_types = tuple(settings.get("instance_types") or default_types)
        architectures.check(arch, instance_types, bool(settings.get("fargate")),
                            bool(settings.get("spot")))
        return cls(
            bucket=bucket, prefix=prefix, region=settings.get("region"),
            profile=settings.get("aws_profile"), endpoint_url=settings.get("endpoint_url"),
            stack=Stack(settings.get("stack", "spmd"), spot=bool(settings.get("spot")),
                        fargate=bool(settings.get("fargate"))),
            max_vcpus=settings.get("max_vcpus", DEFAULT_MAX_VCPUS),
            max_memory=settings.get("max_memory"),
            instance_types=instance_types,
            subnets=tuple(settings.get("subnets") or ()),
            security_groups=tuple(settings.get("security_groups") or ()),
            gpus=settings.get("gpus"), job_role=settings.get("job_role"),
            registry=settings.get("registry"), retention_days=settings.get("retention_days", 30),
            architecture=arch, read_buckets=tuple(settings.get("read_buckets") or ()),
            write_buckets=tuple(settings.get("write_buckets") or ()))

    def clients(self) -> Clients:
        return Clients(self.region, self.endpoint_url, self.profile)

    def job_policy(self, partition: str = "aws") -> dict:
        """The inline policy of the stack's job role for these settings (permissions.py)."""
        from .permissions import job_policy
        return job_policy(self.bucket, self.prefix, partition, read=self.read_buckets,
                          write=self.write_buckets)

    @property
    def memory(self) -> int:
        return self.max_memory or int(self.max_vcpus * MEMORY_PER_VCPU)
