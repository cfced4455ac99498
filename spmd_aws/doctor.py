"""``spmd doctor``'s checks of the AWS backend, without changing anything:

    region, credentials   the profile's region; STS GetCallerIdentity
    stack                 the queue and compute environment VALID and ENABLED, as configured
    permissions           IAM's policy simulator (SimulatePrincipalPolicy) on the caller, for
                          every action a map needs (permissions.MAP_ACTIONS)
    quota                 the account's vCPU quota for the stack's kind (Service Quotas)
                          against max_vcpus
    instance types        a task of the default resources fits an instance type of the
                          deployed compute environment (compute.check_fits)

A check that cannot be made (the caller may not simulate or read quotas, or the service
does not answer) says so and does not fail the doctor.
"""
from __future__ import annotations

from typing import Iterator

from spmd.batch_queue import Resources
from spmd.checks import Check, probe

from . import compute
from .aws import error_code
from .permissions import MAP_ACTIONS

#: the Service Quotas code of the vCPUs the stack's kind may run at once, per kind ("Amazon
#: EC2 service quotas": on-demand and spot standard instances, vCPUs; "AWS Fargate service
#: quotas": vCPU resource counts)
QUOTAS = {
    "ec2": ("ec2", "L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    "spot": ("ec2", "L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
    "fargate": ("fargate", "L-3032A538", "Fargate On-Demand vCPU resource count"),
    "fargate-spot": ("fargate", "L-36FBB829", "Fargate Spot vCPU resource count"),
}


class NotChecked(Exception):
    """A check that could not be made: reported, not failed."""


def checks(backend) -> Iterator[Check]:
    opts, clients = backend.opts, backend.clients
    region = probe("region", lambda: clients.region, 'add region = "us-east-1" (or yours) to '
                   "the profile, or set AWS_DEFAULT_REGION")
    yield region
    if not region.ok:
        return
    who = probe("credentials", lambda: _identity(clients),
                "configure credentials (aws configure, AWS_PROFILE, or an SSO login) and try again")
    yield who
    if not who.ok:
        return
    yield probe("stack", lambda: _stack(opts, clients),
                f"run `spmd aws up` to make or repair stack {opts.stack.name}")
    yield optional("permissions", lambda: _permissions(clients),
                   "grant the caller these actions (docs/aws.md, Permissions, the map row)")
    yield optional("quota", lambda: _quota(opts, clients),
                   "request a higher quota (Service Quotas console) or lower max_vcpus")
    if not opts.stack.fargate:
        yield optional("instance types", lambda: _fits(opts, clients),
                       "set instance_types to types that hold the tasks (e.g. optimal), "
                       "then `spmd aws up`")


def optional(name: str, attempt, fix: str) -> Check:
    """A probe whose NotChecked is an ok line saying why nothing was checked."""
    def run() -> str:
        try:
            return attempt()
        except NotChecked as why:
            return f"not checked: {why}"
    return probe(name, run, fix)


def _identity(clients) -> str:
    identity = clients("sts").get_caller_identity()
    return f"{identity['Arn']} (account {identity['Account']})"


def _stack(opts, clients) -> str:
    batch, stack = clients("batch"), opts.stack
    queue = compute.live_queue(batch, stack.job_queue)
    env = compute.live_environment(batch, stack.compute_environment)
    if queue is None or env is None:
        missing = [name for name, found in ((stack.job_queue, queue),
                                            (stack.compute_environment, env)) if found is None]
        raise LookupError(f"not set up yet: {', '.join(missing)} missing (a first map makes it)")
    for what, found in ((stack.job_queue, queue), (stack.compute_environment, env)):
        if (found.get("status"), found.get("state")) != ("VALID", "ENABLED"):
            raise RuntimeError(f"{what} is {found.get('status')}/{found.get('state')}: "
                               f"{found.get('statusReason') or 'no reason given'}")
    drift = compute.config_drift(opts, env)
    if drift:
        raise RuntimeError(f"compute environment {stack.compute_environment} differs from the "
                           f"config ({compute._said(drift)}); maps run on it as it is")
    return f"{stack.job_queue} and {stack.compute_environment}: VALID, ENABLED, as configured"


def principal(clients, arn: str) -> str | None:
    """The IAM ARN the simulator takes for the caller: a user's as it is, an assumed role's
    role (its path from GetRole); None for the account's root, which may do anything."""
    kind, _, rest = arn.split(":", 5)[5].partition("/")
    if kind == "assumed-role":
        return clients("iam").get_role(RoleName=rest.split("/")[0])["Role"]["Arn"]
    return None if kind == "root" else arn


def _permissions(clients) -> str:
    arn = clients("sts").get_caller_identity()["Arn"]
    try:
        source = principal(clients, arn)
        if source is None:
            return "the account's root user: every action allowed"
        pages = clients("iam", attempts=1).get_paginator("simulate_principal_policy").paginate(
            PolicySourceArn=source, ActionNames=list(MAP_ACTIONS))
        results = [r for page in pages for r in page.get("EvaluationResults", ())]
    except Exception as exc:
        raise NotChecked(f"IAM's policy simulator did not answer ({error_code(exc) or exc}; it "
                         f"needs iam:SimulatePrincipalPolicy{' and iam:GetRole' if 'role' in arn else ''})") from exc
    denied = sorted(r["EvalActionName"] for r in results if r.get("EvalDecision") != "allowed")
    if denied:
        raise PermissionError(f"{source} may not {', '.join(denied)}")
    return f"{source} may do the {len(MAP_ACTIONS)} actions a map needs"


def _quota(opts, clients) -> str:
    service, code, name = QUOTAS[opts.stack.kind]
    quotas = clients("service-quotas", attempts=1)
    try:
        try:
            value = quotas.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"]
        except Exception as exc:
            if error_code(exc) != "NoSuchResourceException":
                raise
            value = quotas.get_aws_default_service_quota(
                ServiceCode=service, QuotaCode=code)["Quota"]["Value"]
    except Exception as exc:
        raise NotChecked(f"Service Quotas did not answer for {code} ({error_code(exc) or exc}; "
                         "it needs servicequotas:GetServiceQuota)") from exc
    if value < opts.max_vcpus:
        raise RuntimeError(f"max_vcpus = {opts.max_vcpus:g}, but the account may run {value:g} "
                           f"vCPUs of {name} ({service} {code}) in {clients.region}")
    return f"{name}: {value:g} vCPUs, max_vcpus {opts.max_vcpus:g}"


def _fits(opts, clients) -> str:
    env = compute.live_environment(clients("batch"), opts.stack.compute_environment)
    if env is None:
        raise NotChecked("no compute environment yet")
    resources = env.get("computeResources") or {}
    types = resources.get("instanceTypes") or list(opts.instance_types)
    sizes = compute.instance_sizes(clients("ec2"), types)
    default = Resources()
    compute.check_fits(default, opts.gpus, sizes, float(resources.get("maxvCpus") or opts.max_vcpus),
                       f"{opts.stack.compute_environment} ({', '.join(types)})")
    return (f"a task of the default resources ({default.vcpus:g} vCPU, "
            f"{default.memory // 2**20} MiB{f', {opts.gpus} GPUs' if opts.gpus else ''}) fits "
            f"{', '.join(types)}")
