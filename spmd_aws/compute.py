"""AWS Batch compute: the stack's compute environment and job queue, kept true to the config.

    network(clients, opts)      the configured subnets and security groups, checked to be in
                                one VPC, or the default VPC's
    ensure_compute_environment  absent, DELETING or DELETED ──> created (retried while a new
                                    instance profile propagates)
                                found ──> what differs from the config (maxvCpus,
                                    instanceTypes, subnets, securityGroupIds, instanceRole,
                                    launchTemplate) updated in place, or a ProvisionError
                                    saying what cannot be; an infrastructure update (all
                                    but maxvCpus) while jobs run is refused, waited out or
                                    forced (up's on_running)
                                INVALID ──> repaired: updated again, with a bounded backoff,
                                    while IAM propagates (CLIENT_ERROR ... IamInstanceProfile)
    ensure_job_queue            created or kept enabled, with jobStateTimeLimitActions that
                                cancel jobs stuck RUNNABLE on MISCONFIGURATION:/CAPACITY:
    ensure_launch_template      EC2: the instances' metadata service blocked for tasks
                                (IMDSv2 required, hop limit 1)
    check_fits                  a task no instance type of the environment can hold is a
                                ResourceError before submit
    disable_and_delete          for ``down``

Describe calls still list environments and queues deleted a moment ago (DELETING, then
DELETED for a while): those count as absent, and a name is reused once it is DELETED.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from spmd.batch_queue import Resources
from spmd.errors import ConfigError, ResourceError

from .aws import Clients, ProvisionError, error_code
from .config import AwsSettings
from .stack import Stack



class Report(Protocol):
    """What up/down record their actions in (provision.Report)."""

    def add(self, action: str, kind: str, name: str) -> None: ...

log = logging.getLogger("spmd")

WAIT_SECONDS = 600
GONE = ("DELETING", "DELETED")
BUSY = ("CREATING", "UPDATING")
#: pauses (s) before each repair of an INVALID compute environment: IAM propagation takes
#: seconds to a few minutes; after the last one up gives up with what to check
REPAIR_DELAYS = (5, 10, 20, 40, 60)
#: pauses (s) between attempts to create a compute environment Batch refuses because a role
#: or instance profile made a moment ago is not visible to it yet
CREATE_DELAYS = (2, 4, 8, 15, 30)
#: jobStateTimeLimitActions of the queue: (reason, seconds RUNNABLE before the job is
#: cancelled). 600 s is Batch's minimum; capacity may come back, so it gets 4 hours
#: ("Automatic remediation with jobStateTimeLimitActions", AWS Batch user guide).
UNPLACEABLE_LIMITS = (("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE", 600),
                      ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", 600),
                      ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", 4 * 3600))
#: computeResources fields UpdateComputeEnvironment changes in place ("Updating compute
#: environments", AWS Batch user guide); beyond maxvCpus, EC2 ones need one of these
#: allocation strategies and Batch's service-linked role
UPDATABLE = {"EC2": ("maxvCpus", "instanceTypes", "subnets", "securityGroupIds", "instanceRole",
                     "launchTemplate"),
             "FARGATE": ("maxvCpus", "subnets", "securityGroupIds")}
INFRASTRUCTURE_UPDATES = ("BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED",
                          "SPOT_PRICE_CAPACITY_OPTIMIZED")

#: what up does when an infrastructure update (anything but maxvCpus, on EC2) meets jobs
#: running on the compute environment: Batch would end them after jobExecutionTimeoutMinutes
#: (30 by default; "UpdatePolicy", AWS Batch API Reference)
REFUSE, WAIT, FORCE = "refuse", "wait", "force"
#: the states of work an infrastructure update would end; an array's parent stays PENDING
#: while its children run ("Job states", AWS Batch user guide)
ACTIVE = ("RUNNING", "STARTING", "PENDING")
#: the longest ``up --wait`` waits for running jobs to end (s)
WAIT_FOR_JOBS = 24 * 3600

_sleep = time.sleep  # the replay tests replace it


def time_limit_actions() -> list[dict]:
    """The queue's jobStateTimeLimitActions: cancel jobs Batch cannot place, with the reason."""
    return [{"reason": reason, "state": "RUNNABLE", "maxTimeSeconds": seconds, "action": "CANCEL"}
            for reason, seconds in UNPLACEABLE_LIMITS]


def wait(what: str, check: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    """Call check until it is true, backing off from 0.5 s to 10 s; ProvisionError on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    while not check():
        if time.monotonic() > deadline:
            raise ProvisionError(f"timed out after {timeout:g}s waiting for {what}")
        _sleep(delay)
        delay = min(delay * 2, 10)


# -- network ----------------------------------------------------------------------------

def network(clients: Clients, opts: AwsSettings) -> tuple[list[str], list[str]]:
    """Subnets and security groups: the configured ones (one VPC), the VPC's own for the
    half not configured, or the default VPC's."""
    subnets, groups = list(opts.subnets), list(opts.security_groups)
    if not subnets and not groups:
        return _default_network(clients)
    ec2 = clients("ec2")
    where: dict[str, str] = {}
    if subnets:
        where.update({s["SubnetId"]: s["VpcId"]
                      for s in ec2.describe_subnets(SubnetIds=subnets)["Subnets"]})
    if groups:
        where.update({g["GroupId"]: g.get("VpcId", "")
                      for g in ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]})
    vpcs = sorted(set(where.values()))
    if len(vpcs) > 1:
        shown = ", ".join(f"{thing} is in {vpc}" for thing, vpc in sorted(where.items()))
        raise ConfigError(f"subnets and security_groups must all be in one VPC, but {shown}; "
                          "AWS Batch would make the compute environment INVALID. Pick security "
                          "groups of the subnets' VPC (or leave security_groups out to use its "
                          "default group)", key="security_groups" if groups else "subnets")
    vpc = vpcs[0]
    if not subnets:
        subnets = [s["SubnetId"] for s in ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    if not groups:
        groups = _default_group(ec2, vpc)
    if not subnets or not groups:
        raise ProvisionError(f"VPC {vpc} has no subnets or default security group; set both "
                             "subnets and security_groups in the profile")
    return subnets, groups


def _default_group(ec2, vpc: str) -> list[str]:
    return [g["GroupId"] for g in ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]]


def _default_network(clients: Clients) -> tuple[list[str], list[str]]:
    ec2 = clients("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise ProvisionError(f"region {clients.region} has no default VPC; set subnets and "
                             "security_groups in the profile")
    vpc = vpcs[0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    groups = _default_group(ec2, vpc)
    if not subnets or not groups:
        raise ProvisionError(f"the default VPC {vpc} has no subnets or default security group; "
                             "set subnets and security_groups in the profile")
    return subnets, groups


# -- the launch template ------------------------------------------------------------------

#: the instances' metadata service: IMDSv2 only, and a hop limit of 1, so a task's container
#: (one network hop further, on Docker's bridge) cannot reach it nor read the instance
#: profile's credentials ("Configure the instance metadata options", Amazon EC2 user guide;
#: "IAM roles for tasks", Amazon ECS: tasks get the job role from the ECS agent instead)
METADATA_OPTIONS = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1,
                    "HttpEndpoint": "enabled"}


def ensure_launch_template(ec2, stack: Stack) -> tuple[str, str]:
    """(its name, what was done): the stack's launch template with METADATA_OPTIONS, created
    when missing; one of the stack's whose default version differs gets a new default
    version; one not tagged by the stack is used as it is."""
    name = stack.launch_template
    try:
        [template] = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
    except Exception as exc:
        if error_code(exc) not in ("InvalidLaunchTemplateName.NotFoundException",
                                   "InvalidLaunchTemplateId.NotFound"):
            raise
        ec2.create_launch_template(
            LaunchTemplateName=name, LaunchTemplateData={"MetadataOptions": METADATA_OPTIONS},
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": stack.tag_list}])
        return name, "created"
    if not stack.owns(template.get("Tags") or []):
        return name, "found (not tagged by this stack; left as it is)"
    [version] = ec2.describe_launch_template_versions(
        LaunchTemplateName=name, Versions=["$Default"])["LaunchTemplateVersions"]
    options = (version.get("LaunchTemplateData") or {}).get("MetadataOptions") or {}
    if all(options.get(k) == v for k, v in METADATA_OPTIONS.items()):
        return name, "found"
    number = ec2.create_launch_template_version(
        LaunchTemplateName=name, LaunchTemplateData={"MetadataOptions": METADATA_OPTIONS}
    )["LaunchTemplateVersion"]["VersionNumber"]
    ec2.modify_launch_template(LaunchTemplateName=name, DefaultVersion=str(number))
    return name, "updated"


def delete_launch_template(ec2, stack: Stack) -> str:
    """'deleted', 'absent' or 'kept (not tagged by this stack)', for ``down``."""
    try:
        [template] = ec2.describe_launch_templates(
            LaunchTemplateNames=[stack.launch_template])["LaunchTemplates"]
    except Exception as exc:
        if error_code(exc) in ("InvalidLaunchTemplateName.NotFoundException",
                               "InvalidLaunchTemplateId.NotFound"):
            return "absent"
        raise
    if not stack.owns(template.get("Tags") or []):
        return "kept (not tagged by this stack)"
    ec2.delete_launch_template(LaunchTemplateName=stack.launch_template)
    return "deleted"


# -- the compute environment --------------------------------------------------------------

def compute_resources(opts: AwsSettings, subnets: list[str], groups: list[str],
                      instance_profile: str | None, launch_template: str | None = None) -> dict:
    """The computeResources of the stack's compute environment as the config says (on EC2
    with the stack's launch template: its default version, read by Batch when the compute
    environment is made or updated)."""
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
    if launch_template:
        resources["launchTemplate"] = {"launchTemplateName": launch_template,
                                       "version": "$Default"}
    return resources


def live(found: list[dict]) -> dict | None:
    """The entry of a describe call that is not being (or has not been) deleted."""
    return next((x for x in found if x.get("status") not in GONE), None)


def live_environment(batch, name: str) -> dict | None:
    """The compute environment of that name, None when absent, DELETING or DELETED."""
    return live(batch.describe_compute_environments(
        computeEnvironments=[name])["computeEnvironments"])


def live_queue(batch, name: str) -> dict | None:
    """The job queue of that name, None when absent, DELETING or DELETED."""
    return live(batch.describe_job_queues(jobQueues=[name])["jobQueues"])


def _settled(kind: str, name: str, describe: Callable[[], list[dict]]) -> dict | None:
    """The resource once it is not being created, updated or deleted; None when absent
    (a name is free again once its resource is DELETED)."""
    seen: dict = {}

    def check() -> bool:
        found = describe()
        if any(x.get("status") == "DELETING" for x in found):
            return False
        seen["it"] = live(found)
        return seen["it"] is None or seen["it"].get("status") not in BUSY
    wait(f"{kind} {name}", check)
    return seen["it"]


def settled_environment(batch, name: str) -> dict | None:
    return _settled("compute environment", name, lambda: batch.describe_compute_environments(
        computeEnvironments=[name])["computeEnvironments"])


def settled_queue(batch, name: str) -> dict | None:
    return _settled("job queue", name,
                    lambda: batch.describe_job_queues(jobQueues=[name])["jobQueues"])


def _platform(resources: dict) -> str:
    return "FARGATE" if str(resources.get("type", "")).startswith("FARGATE") else "EC2"


def differences(env: dict, wanted: dict) -> dict[str, tuple]:
    """Field -> (deployed, wanted) for the updatable fields of wanted the environment differs in."""
    current = env.get("computeResources") or {}
    out = {}
    for key in UPDATABLE[_platform(current or wanted)]:
        if key not in wanted:
            continue
        old, new = current.get(key), wanted[key]
        if key == "launchTemplate":  # Batch may add the template's id: the name decides
            same = (old or {}).get("launchTemplateName") == new.get("launchTemplateName")
        else:
            same = sorted(old or []) == sorted(new) if isinstance(new, list) else old == new
        if not same:
            out[key] = (old, new)
    return out


def config_drift(opts: AwsSettings, env: dict) -> dict[str, tuple]:
    """What the deployed environment has other than the config says (the configured fields)."""
    wanted: dict = {"maxvCpus": int(opts.max_vcpus)}
    if not opts.stack.fargate:
        wanted["instanceTypes"] = list(opts.instance_types)
    if opts.subnets:
        wanted["subnets"] = list(opts.subnets)
    if opts.security_groups:
        wanted["securityGroupIds"] = list(opts.security_groups)
    return differences(env, wanted)


def _said(changes: dict[str, tuple]) -> str:
    def text(value) -> str:
        if isinstance(value, dict):  # a launch template
            return value.get("launchTemplateName") or "none"
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return "; ".join(f"{key} {text(old)} → {text(new)}" for key, (old, new) in changes.items())


def _blocked(env: dict, changes: dict[str, tuple]) -> str:
    """Why Batch cannot make these changes in place ('' when it can)."""
    resources = env.get("computeResources") or {}
    if set(changes) <= {"maxvCpus"} or _platform(resources) == "FARGATE":
        return ""
    strategy = resources.get("allocationStrategy") or "BEST_FIT"
    if strategy not in INFRASTRUCTURE_UPDATES:
        return f"it was made with allocation strategy {strategy}"
    role = env.get("serviceRole") or ""
    if role and "/aws-service-role/" not in role:
        return f"its service role {role} is not AWS Batch's service-linked role"
    return ""


def running_job(batch, queue: str) -> str | None:
    """The id of one job of the queue an infrastructure update would end (one ListJobs of
    one result per state in ACTIVE, until one is found), or None."""
    for status in ACTIVE:
        try:
            found = batch.list_jobs(jobQueue=queue, jobStatus=status, maxResults=1)
        except Exception as exc:
            if error_code(exc) == "ClientException":  # no such queue: nothing runs
                return None
            raise
        if found.get("jobSummaryList"):
            return found["jobSummaryList"][0]["jobId"]
    return None


def _guard_running_work(batch, stack: Stack, changes: dict[str, tuple], on_running: str) -> None:
    """Refuse (or wait out) an infrastructure update while jobs run on the environment."""
    if on_running == FORCE or set(changes) <= {"maxvCpus"} or stack.fargate:
        return  # a scaling update, or Fargate (new tasks take the change; none is ended)
    job = running_job(batch, stack.job_queue)
    if job is None:
        return
    name = stack.compute_environment
    if on_running == WAIT:
        log.warning("compute environment %s: waiting for the jobs of queue %s to end before "
                    "changing %s", name, stack.job_queue, _said(changes))
        wait(f"the jobs of queue {stack.job_queue} to end",
             lambda: running_job(batch, stack.job_queue) is None, WAIT_FOR_JOBS)
        return
    raise ProvisionError(
        f"compute environment {name}: {_said(changes)} is an infrastructure update, and job "
        f"queue {stack.job_queue} has work running (job {job}); AWS Batch would end it after "
        "jobExecutionTimeoutMinutes (30 minutes by default). Run `spmd aws up --wait` to apply "
        "it once the jobs have ended, or `spmd aws up --force` to apply it now")


def _update(batch, name: str, changes: dict, service_role: str) -> None:
    batch.update_compute_environment(computeEnvironment=name, serviceRole=service_role,
                                     computeResources=changes)


def _create(batch, stack: Stack, resources: dict, service_role: str) -> None:
    name = stack.compute_environment
    for delay in (*CREATE_DELAYS, None):
        try:
            batch.create_compute_environment(
                computeEnvironmentName=name, type="MANAGED", state="ENABLED",
                computeResources=resources, serviceRole=service_role, tags=stack.tags)
            return
        except Exception as exc:
            text = str(exc).lower()
            if delay is None or error_code(exc) != "ClientException" or \
                    "role" not in text and "profile" not in text:
                raise
            log.info("compute environment %s: %s; trying again in %gs (IAM propagation)",
                     name, exc, delay)
            _sleep(delay)


def ensure_compute_environment(batch, stack: Stack, wanted: dict, service_role: str,
                               report: Report, on_running: str = REFUSE) -> dict:
    """The stack's compute environment, VALID and as the config says; its record.

    An infrastructure update (on EC2, anything but maxvCpus) while jobs run: ProvisionError
    (REFUSE), done once they have ended (WAIT), or done now (FORCE).
    """
    name = stack.compute_environment
    env = settled_environment(batch, name)
    if env is None:
        _create(batch, stack, wanted, service_role)
        report.add("created", "compute environment", name)
    elif not stack.owns(env.get("tags")):
        changes = differences(env, wanted)
        note = f"; differs from the config: {_said(changes)}" if changes else ""
        report.add(f"found (not tagged by this stack; left as it is{note})",
                   "compute environment", name)
        if env.get("status") == "INVALID":
            raise ProvisionError(f"compute environment {name} is INVALID "
                                 f"({env.get('statusReason')}) and not tagged by stack "
                                 f"{stack.name}, so spmd leaves it alone: repair it, or set "
                                 "another stack name")
        return env
    else:
        changes = differences(env, wanted)
        if changes:
            blocked = _blocked(env, changes)
            if blocked:
                raise ProvisionError(
                    f"compute environment {name} cannot change in place ({_said(changes)}): "
                    f"{blocked}. Run `spmd aws down` and then `spmd aws up` to make it again, "
                    "or put the config back")
            _guard_running_work(batch, stack, changes, on_running)
            _update(batch, name, {k: new for k, (_, new) in changes.items()}, service_role)
            report.add("updated", "compute environment", f"{name} ({_said(changes)})")
        else:
            report.add("found", "compute environment", name)
    env = settled_environment(batch, name)
    if env is None:
        raise ProvisionError(f"compute environment {name} is not listed by AWS Batch right "
                             "after it was made or updated; run `spmd aws up` again")
    if env.get("status") == "INVALID":
        env = repair(batch, stack, wanted, service_role, env, report)
    if env.get("state") != "ENABLED":  # an interrupted down leaves it disabled
        batch.update_compute_environment(computeEnvironment=name, state="ENABLED")
        report.add("enabled", "compute environment", name)
        env = settled_environment(batch, name) or env
    return env


def repair(batch, stack: Stack, wanted: dict, service_role: str, env: dict,
           report: Report) -> dict:
    """Update an INVALID compute environment of the stack until it is VALID (bounded backoff).

    Its usual cause is IAM propagation: an instance profile made a moment ago reads as
    ``CLIENT_ERROR - ... Invalid IamInstanceProfile`` to Batch, later, not at create time.
    An update with the same settings makes Batch validate them again.
    """
    name = stack.compute_environment
    fields = {k: v for k, v in wanted.items() if k in UPDATABLE[_platform(wanted)]}
    first = env.get("statusReason") or "no reason given"
    reason = first
    for delay in REPAIR_DELAYS:
        log.warning("compute environment %s is INVALID (%s); updating it in %gs to repair it",
                    name, reason, delay)
        _sleep(delay)
        _update(batch, name, fields, service_role)
        env = settled_environment(batch, name)
        if env is None:
            raise ProvisionError(f"compute environment {name} disappeared while spmd repaired "
                                 "it; run `spmd aws up` again")
        if env.get("status") != "INVALID":
            report.add("repaired", "compute environment", f"{name} (was INVALID: {first})")
            return env
        reason = env.get("statusReason") or reason
    raise ProvisionError(
        f"compute environment {name} is still INVALID after {len(REPAIR_DELAYS)} updates over "
        f"{sum(REPAIR_DELAYS)}s: {reason}. Check that the instance profile {stack.instance_role} "
        f"exists and holds the role {stack.instance_role}, that the subnets and security groups "
        "exist, and that AWS Batch's service-linked role does; then run `spmd aws up` again (or "
        "`spmd aws down` and `spmd aws up` to make the stack anew)")


# -- the job queue ------------------------------------------------------------------------

def ensure_job_queue(batch, stack: Stack, compute_environment: str, report: Report) -> dict:
    """The stack's job queue, VALID, ENABLED, on the compute environment, with the
    jobStateTimeLimitActions; its record."""
    name = stack.job_queue
    order = [{"order": 1, "computeEnvironment": compute_environment}]
    queue = settled_queue(batch, name)
    if queue is None:
        batch.create_job_queue(jobQueueName=name, state="ENABLED", priority=1, tags=stack.tags,
                               computeEnvironmentOrder=order,
                               jobStateTimeLimitActions=time_limit_actions())
        report.add("created", "job queue", name)
    elif stack.owns(queue.get("tags")):
        update: dict = {}
        if queue.get("state") != "ENABLED":
            update["state"] = "ENABLED"
        if (queue.get("jobStateTimeLimitActions") or []) != time_limit_actions():
            update["jobStateTimeLimitActions"] = time_limit_actions()
        attached = [o.get("computeEnvironment", "") for o in queue.get("computeEnvironmentOrder", ())]
        if not any(a == compute_environment or a.endswith("/" + compute_environment)
                   for a in attached):
            update["computeEnvironmentOrder"] = order
        if update:
            batch.update_job_queue(jobQueue=name, **update)
            report.add("updated", "job queue", f"{name} ({', '.join(update)})")
        else:
            report.add("found", "job queue", name)
    else:
        report.add("found (not tagged by this stack; left as it is)", "job queue", name)
    queue = settled_queue(batch, name)
    if queue is None:
        raise ProvisionError(f"job queue {name} is not listed by AWS Batch right after it was "
                             "made; run `spmd aws up` again")
    if queue.get("status") == "INVALID":
        raise ProvisionError(f"job queue {name} is INVALID: {queue.get('statusReason')}; "
                             "run `spmd aws down` and `spmd aws up`")
    return queue


# -- what fits ----------------------------------------------------------------------------

@dataclass(frozen=True)
class InstanceSize:
    """One instance type's vCPUs, memory and GPUs."""

    name: str
    vcpus: int
    memory: int  # MiB
    gpus: int = 0


#: the largest instances Batch may choose for its instance bundles ("ComputeResource",
#: instanceTypes, AWS Batch API Reference: optimal = the c4, m4, r4, c5, m5 and r5 families,
#: and since November 2025 what default_x86_64 picks, m6i, c6i, r6i and c7i; default_arm64 =
#: m6g, c6g, r6g and c7g). No bundle has GPUs.
BUNDLES = {
    "optimal": (InstanceSize("c7i.48xlarge", 192, 384 * 1024),
                InstanceSize("r6i.32xlarge", 128, 1024 * 1024)),
    "default_x86_64": (InstanceSize("c7i.48xlarge", 192, 384 * 1024),
                       InstanceSize("r6i.32xlarge", 128, 1024 * 1024)),
    "default_arm64": (InstanceSize("r6g.16xlarge", 64, 512 * 1024),),
}


def instance_sizes(ec2, instance_types: tuple[str, ...] | list[str]) -> list[InstanceSize]:
    """The sizes of the instance types (bundles, families such as ``c6i``, or exact types),
    from EC2 DescribeInstanceTypes; [] when unknown."""
    sizes = [size for t in instance_types for size in BUNDLES.get(t, ())]
    exact = [t for t in instance_types if "." in t]
    families = [f"{t}.*" for t in instance_types if "." not in t and t not in BUNDLES]
    requests = ([{"InstanceTypes": exact}] if exact else []) + \
        ([{"Filters": [{"Name": "instance-type", "Values": families}]}] if families else [])
    for request in requests:
        for page in ec2.get_paginator("describe_instance_types").paginate(**request):
            for item in page.get("InstanceTypes", ()):
                gpus = sum(g.get("Count", 0) for g in (item.get("GpuInfo") or {}).get("Gpus", ()))
                sizes.append(InstanceSize(item["InstanceType"], item["VCpuInfo"]["DefaultVCpus"],
                                          item["MemoryInfo"]["SizeInMiB"], gpus))
    return sizes


def check_fits(resources: Resources, gpus: int | None, sizes: list[InstanceSize],
               max_vcpus: float, where: str) -> None:
    """ResourceError when no instance of sizes (nor the environment's maxvCpus) can hold a
    task: Batch would keep it RUNNABLE until the queue cancels it."""
    # the largest of memory=[sizes]: a task may be run again at each of them
    vcpus, memory = max(1, math.ceil(resources.vcpus)), math.ceil(max(resources.memory_sizes) / 2**20)
    gpus = gpus or 0
    asked = f"{vcpus} vCPUs and {memory} MiB" + (f" and {gpus} GPUs" if gpus else "")
    if vcpus > max_vcpus:
        raise ResourceError(f"a task asks for {asked}, but compute environment {where} has "
                            f"maxvCpus {max_vcpus:g}: ask for fewer vcpus, or raise max_vcpus in "
                            "the profile (`spmd aws up` applies it)")
    if not sizes or any(s.vcpus >= vcpus and s.memory >= memory and s.gpus >= gpus
                        for s in sizes):
        return
    largest = ", ".join(f"{s.name} {s.vcpus} vCPUs/{s.memory} MiB/{s.gpus} GPUs"
                        for s in sorted(sizes, key=lambda s: (s.memory, s.vcpus))[-3:])
    hint = "GPU instance types (e.g. g4dn, g5, p3)" if gpus and not any(s.gpus for s in sizes) \
        else "larger instance types"
    raise ResourceError(f"no instance type of compute environment {where} can hold a task of "
                        f"{asked} (the largest: {largest}); AWS Batch would leave it RUNNABLE. "
                        f"Ask for less, or set instance_types in the profile to {hint} and run "
                        "`spmd aws up`")


# -- removing -----------------------------------------------------------------------------

def disable_and_delete(batch, kind: str, name: str) -> None:
    """Disable a job queue or compute environment, delete it, and wait until it is gone."""
    queue = kind == "job queue"

    def describe() -> list[dict]:
        if queue:
            return batch.describe_job_queues(jobQueues=[name])["jobQueues"]
        return batch.describe_compute_environments(
            computeEnvironments=[name])["computeEnvironments"]
    current = live(describe())
    if current is None:
        return
    if current.get("state") != "DISABLED":
        if queue:
            batch.update_job_queue(jobQueue=name, state="DISABLED")
        else:
            batch.update_compute_environment(computeEnvironment=name, state="DISABLED")
    wait(f"{kind} {name} to be disabled",
         lambda: (live(describe()) or {}).get("status") not in BUSY)
    if queue:
        batch.delete_job_queue(jobQueue=name)
    else:
        batch.delete_compute_environment(computeEnvironment=name)
    wait(f"{kind} {name} to be deleted",
         lambda: not [x for x in describe() if x.get("status") != "DELETED"])
