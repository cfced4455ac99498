"""AwsBackend: the three parts on AWS, S3 (store), ECR (registry) and AWS Batch (queue).

Constructing it checks the settings and calls nothing; clients are made on first use.
``capacity()`` (the first thing ``map`` asks) and the queue's first submit look the stack
up and provision what is missing (``spmd aws up`` does it explicitly).
"""
from __future__ import annotations

import math
from functools import cached_property
from typing import TYPE_CHECKING

from spmd.backend import Backend, Capacity, DataRule
from spmd.config import Settings

from .config import KEYS, MEMORY_PER_VCPU, AwsSettings
from .queue import AwsBatchQueue
from .registry import EcrRegistry
from .store import S3Store

if TYPE_CHECKING:
    from spmd.destinations import Destinations
    from spmd.remote import UrlRef


class AwsBackend(Backend):
    """Tasks are AWS Batch array jobs; job data lives in S3, images in ECR."""

    name = "aws"
    config_keys = KEYS
    # s3fs: tasks read URL inputs and publish outputs_to themselves (data_rule); pinned with
    # aiobotocore, whose narrow botocore pin then meets boto3's without pip backtracking
    poll_interval = 3.0
    #: each task fetches its URL inputs and publishes its outputs itself, as the job role:
    #: no byte of that data passes through the client
    data_rule = DataRule(inputs="task", outputs="task")

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.opts = AwsSettings.from_settings(settings)

    @cached_property
    def clients(self):
        return self.opts.clients()

    def doctor_checks(self):
        from .doctor import checks
        return checks(self)

    def make_store(self) -> S3Store:
        opts = self.opts
        return S3Store(opts.bucket, opts.prefix, region=opts.region, endpoint_url=opts.endpoint_url,
                       profile=opts.profile, create=True, stack=opts.stack,
                       retention_days=opts.retention_days, clients=self.clients)

    def make_registry(self) -> EcrRegistry:
        return EcrRegistry(self.clients, self.opts.stack, address=self.opts.registry)

    def make_queue(self) -> AwsBatchQueue:
        return AwsBatchQueue(self.opts, self.clients, store=lambda: self.store)

    def capacity(self) -> Capacity:
        """What the deployed compute environment has (its maxvCpus), never only what the
        config says: the stack is looked up first, and made or updated when it is missing or
        differs from the config (as the first submit would)."""
        vcpus = self.queue.deployment().max_vcpus or self.opts.max_vcpus
        # GPUs: any number passes here; the queue refuses at submit what no instance type
        # of the compute environment holds (compute.check_fits) and GPUs on Fargate
        return Capacity(vcpus=vcpus, memory=self.opts.max_memory or int(vcpus * MEMORY_PER_VCPU),
                        gpus=math.inf)

    def estimate_cost(self, report):
        """The run report's cost estimate (spmd_aws.cost): vCPU-seconds × price, plus requests."""
        from . import cost
        return cost.estimate(report, vcpus=report.vcpus, memory=report.memory,
                             fargate=self.opts.stack.fargate,
                             price_per_vcpu_hour=self.settings.get("price_per_vcpu_hour"))

    def check_data(self, inputs: list[UrlRef], destinations: Destinations | None) -> None:
        """Refuse at map() an s3 input outside read_buckets, or an outputs_to outside
        write_buckets, that a task would reach as the job role (spmd_aws.access): IAM would
        refuse it only in the running task. anon=True and https:// need nothing."""
        from . import access
        access.check(self.settings, self.opts, inputs, destinations)

    def image_platform(self) -> str:
        """Batch runs x86_64 unless architecture = "arm64" (Graviton)."""
        return {"x86_64": "linux/amd64", "arm64": "linux/arm64"}[self.opts.architecture]

    def describe(self) -> str:
        where = f"s3://{self.opts.bucket}/{self.opts.prefix}"
        return f"aws backend (stack {self.opts.stack.name}, {self.opts.stack.kind}, store {where})"
