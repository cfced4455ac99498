"""What a job cost on AWS, estimated for its run report: compute plus requests.

    vCPU-seconds (each task's last attempt, end - start, × its vcpus) × price per vCPU-hour
    + S3 requests (spmd's writes and reads of the job's objects) + Batch (free)

An estimate, never a bill: prices are us-east-1 on-demand list prices as of PRICES_AS_OF
(per vCPU-hour of a general-purpose instance, c6i/m6i ≈ $0.0425; Fargate $0.04048 plus
memory), and an instance's idle time, spot discounts, storage and data transfer are not
counted. ``price_per_vcpu_hour`` in the profile sets your own price.
"""
from __future__ import annotations

from spmd.report import CostEstimate, Report

PRICES_AS_OF = "2025-01 (us-east-1 on-demand list prices)"
EC2_PER_VCPU_HOUR = 0.0425        # c6i.large / m6i.large: $0.085-0.096 per hour for 2 vCPUs
FARGATE_PER_VCPU_HOUR = 0.04048
FARGATE_PER_GB_HOUR = 0.004445
S3_PUT_PER_REQUEST = 0.005 / 1000
S3_GET_PER_REQUEST = 0.0004 / 1000


def estimate(report: Report, *, vcpus: float, memory: int, fargate: bool = False,
             price_per_vcpu_hour: float | None = None) -> CostEstimate:
    """The estimated cost of the tasks in report, each using vcpus and memory (bytes)."""
    tasks = report.tasks()
    seconds = sum(r.duration or 0.0 for r in tasks)
    attempts = sum(max(r.attempts, 1) for r in tasks)
    vcpu_seconds = seconds * vcpus
    price = price_per_vcpu_hour or (FARGATE_PER_VCPU_HOUR if fargate else EC2_PER_VCPU_HOUR)
    compute = vcpu_seconds / 3600 * price
    if fargate and not price_per_vcpu_hour:
        compute += seconds * memory / 2**30 / 3600 * FARGATE_PER_GB_HOUR
    # per attempt: 1 output PUT, 4 GETs (manifest, shard index, payload, function);
    # per job: manifest, function, queue handle and a shard PUT, and the client's LISTs.
    puts = attempts + 4
    gets = 4 * attempts + len(tasks)
    requests_cost = puts * S3_PUT_PER_REQUEST + gets * S3_GET_PER_REQUEST
    note = "your price" if price_per_vcpu_hour else ("Fargate" if fargate else
                                                     "EC2 on demand; spot is often 60-90% less")
    return CostEstimate(dollars=compute + requests_cost, vcpu_seconds=vcpu_seconds,
                        requests=puts + gets, price_per_vcpu_hour=price, prices_as_of=PRICES_AS_OF,
                        note=note)
