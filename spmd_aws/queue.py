"""AwsBatchQueue: arrays of tasks as AWS Batch array jobs.

    submit(spec) ──> checked first, before any AWS call: gpus on Fargate, retries, each
                     SubmitJob request under Batch's 30 KiB and its containerOverrides
                     under ECS's 8,192 bytes less what Batch adds (the user's env included)
                 ──> deployment (the stack's queue and roles; provisioned when missing)
                 ──> on EC2: a task no instance type of the compute environment can hold
                     is refused (compute.check_fits; DescribeInstanceTypes once for
                     instance types that are not Batch's bundles)
                 ──> job definition for image + command + resources: found by name
                     (<stack>-<content hash>) or registered once
                 ──> one SubmitJob per ≤10,000 tasks (SPMD_TASK_OFFSET in each one's env);
                     a part of one task is a plain job (SPMD_SINGLE_TASK=1); with
                     max_parallel=N, waves of N, each dependsOn N_TO_N the one before; a
                     chained map's dependsOn its upstream arrays (spmd_aws.chain); a job's
                     secrets named in its job definition (spmd_aws.secrets)
                 ──> handle: {"v": 1, "jobs": [[job id, first task, size], ...], "attempts": n}
    states       ──> DescribeJobs of the arrays' parents (100 per request): per array, its
                     statusSummary; ListJobs(arrayJobId, status), paginated, only for those of
                     RUNNING, SUCCEEDED, FAILED whose count differs from the children known;
                     children not listed are PENDING; a parent not described for
                     FORGOTTEN_AFTER is forgotten (its tasks resolve from the store); a child listed twice
                     keeps its later state; ended children are described once (100 per
                     request) for their reason, attempts and exit code: the failed ones,
                     and the succeeded ones only when retries could make them more than 1;
                     while children are not listed, one ListJobs(RUNNABLE, maxResults=1)
                     tells why the array waits (MISCONFIGURATION:..., CAPACITY:...), which
                     becomes the pending tasks' reason; reasons are read by spmd_aws.reasons
                 ──> with memory=[sizes]: tasks killed for memory again at the next size
                     (spmd_aws.memory: one record object per resubmission, claimed first)
    cancel       ──> TerminateJob on each parent (or plain job); Batch cancels the children
    log_part     ──> a lost task's tail: its last attempt's stream, GetLogEvents(limit=100),
                     for the first TAILS_READ lost tasks of a job in a process; the others'
                     errors say how to read their log (logs() reads it when asked)
    logs         ──> the record states() described (DescribeJobs only if it did not)
                     ──> the tail of every attempt's CloudWatch Logs stream in the stack's log
                     group (``/aws/batch/job`` for jobs of spmd before it had one), one
                     request each

The parents' own status is never read: a parent may stay SUBMITTED after its
children ended (moto does this; AWS updates it late).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
import logging
import math
import threading
import time
from typing import Callable, Mapping

from spmd.batch_queue import (CANCELLED, FAILED, SUCCEEDED, ArraySpec, BatchQueue, Resources,
                               TaskStatus)
from spmd.errors import ResourceError
from spmd.stores.object_store import ObjectStore

from . import chain, signing
from .aws import AwsError, Clients, boundary, error_code
from .compute import check_fits, instance_sizes
from .config import MAX_ATTEMPTS, AwsSettings
from .handle import (MAX_ARRAY, child_id, decode_handle, encode_handle, grows, max_attempts,
                     parts, split, waits_for)
from .provision import Deployment, deployment, ensure_log_group
from .reasons import (BUDGET_REASON, CANCEL_REASON, NEVER_PLACED, NOT_RUN, UNPLACEABLE,
                      UNPLACED_REASON,
                      exit_code, retry_strategy, task_status)
from .stack import CONTENT_TAG

__all__ = ["AwsBatchQueue", "CANCEL_REASON", "decode_handle", "encode_handle", "split",
           "task_status"]  # the reasons are spmd_aws.reasons'

log = logging.getLogger("spmd")

MIN_TIMEOUT = 60  # AWS Batch's smallest attemptDurationSeconds
LOG_GROUP = "/aws/batch/job"  # AWS Batch's default, where jobs of earlier spmd versions log
MAX_SUBMIT_BYTES = 30 * 1024  # AWS Batch's limit on a SubmitJob request ("Service quotas")
#: ECS's limit on a task's container overrides, which Batch makes from containerOverrides:
#: above it SubmitJob succeeds and the job FAILS ("Container Overrides length must be at most
#: 8192", ECS RunTask "overrides": "up to 8192 bytes of JSON")
MAX_OVERRIDES = 8192
#: of those, what Batch adds itself (AWS_BATCH_JOB_ID, AWS_BATCH_JQ_NAME, AWS_BATCH_CE_NAME,
#: AWS_BATCH_JOB_ATTEMPT, AWS_BATCH_JOB_ARRAY_INDEX, ... with ARNs and ids as values)
BATCH_OVERRIDES = 1024
#: Batch's cpuArchitecture (a Fargate job definition's runtimePlatform) per architecture
CPU_ARCHITECTURES = {"x86_64": "X86_64", "arm64": "ARM64"}
_LISTED = ("RUNNING", "SUCCEEDED", "FAILED")  # in the order a child moves through them
_RANK = {status: rank for rank, status in enumerate(("SUBMITTED", "PENDING", "RUNNABLE", "STARTING",
                                                     "RUNNING", "SUCCEEDED", "FAILED"))}
FARGATE_SIZES = {  # vCPU -> allowed memory in MiB
    0.25: [512, 1024, 2048],
    0.5: list(range(1024, 4097, 1024)),
    1: list(range(2048, 8193, 1024)),
    2: list(range(4096, 16385, 1024)),
    4: list(range(8192, 30721, 1024)),
    8: list(range(16384, 61441, 4096)),
    16: list(range(32768, 122881, 8192)),
}


#: events of a lost task's log its error shows (its last attempt's stream, one request)
TAIL_EVENTS = 100
#: lost tasks per job whose error shows its log's tail (one GetLogEvents each, per process);
#: the others' errors say how to read their log (job.logs reads it when asked)
TAILS_READ = 25
#: seconds Batch may describe nothing of a job before spmd takes it as forgotten
FORGOTTEN_AFTER = 120.0


def forgotten_status(job_id: str) -> TaskStatus:
    """A task of a job AWS Batch no longer knows: judged by its output (the client takes an
    output when there is one), else lost, saying why."""
    return TaskStatus(FAILED, 0, None, f"the scheduler no longer knows this job: AWS Batch "
                      f"describes no job {job_id} (it keeps ended jobs for a limited time)",
                      "infrastructure")


# -- job definitions ----------------------------------------------------------------

def resource_requirements(res: Resources, gpus: int | None, fargate: bool) -> list[dict]:
    """Batch resourceRequirements: whole vCPUs on EC2, the next valid size on Fargate."""
    if gpus and fargate:
        raise ResourceError(f"gpus={gpus}: Fargate has no GPUs; remove gpus from the profile or "
                            "set fargate = false and GPU instance_types (e.g. g4dn.xlarge)")
    memory = math.ceil(res.memory / 2**20)
    if fargate:
        fits = [v for v in FARGATE_SIZES if v >= res.vcpus and FARGATE_SIZES[v][-1] >= memory]
        if not fits:
            raise ResourceError(f"Fargate runs tasks of at most 16 vCPUs and 120 GiB; this task "
                                f"asks for {res.vcpus:g} vCPUs and {memory} MiB")
        vcpus = fits[0]
        memory = next(m for m in FARGATE_SIZES[vcpus] if m >= memory)
        vcpu_text = f"{vcpus:g}"
    else:
        vcpu_text = str(max(1, math.ceil(res.vcpus)))
    out = [{"type": "VCPU", "value": vcpu_text}, {"type": "MEMORY", "value": str(memory)}]
    if gpus:
        out.append({"type": "GPU", "value": str(gpus)})
    return out


def job_definition(spec: ArraySpec, where: Deployment, gpus: int | None = None,
                   architecture: str = "x86_64") -> dict:
    """The RegisterJobDefinition request (without name and tags) for an array's spec.

    A timeout of 60 s or more is Batch's own (attemptDurationSeconds). A shorter one is
    enforced in the container by ``spmd_aws.task`` (exit 124, not retried), with
    Batch's timeout 60 s later as a backstop. Losses to the infrastructure are retried by
    Batch itself (``reasons.retry_strategy``). On Fargate, ``runtimePlatform`` names the
    CPU architecture; on EC2 the compute environment's instance types do.
    """
    res = spec.resources
    if res.retries + 1 > MAX_ATTEMPTS:
        raise ResourceError(f"retries={res.retries}: AWS Batch runs a task at most "
                            f"{MAX_ATTEMPTS} times, so retries can be at most {MAX_ATTEMPTS - 1}")
    command = ["python3", "-m", "spmd_aws.task"]
    timeout = None
    if res.timeout:
        if res.timeout >= MIN_TIMEOUT:
            timeout = math.ceil(res.timeout)
        else:
            command += ["--timeout", f"{res.timeout:g}"]
            timeout = math.ceil(res.timeout) + MIN_TIMEOUT
    fargate = where.platform == "FARGATE"
    retry = retry_strategy(res, MAX_ATTEMPTS, fargate,
                           short_timeout=bool(res.timeout) and res.timeout < MIN_TIMEOUT)
    container = {
        "image": spec.image,
        "command": command + ["--", *spec.command],
        "jobRoleArn": where.job_role,
        "resourceRequirements": resource_requirements(res, gpus, fargate),
    }
    if fargate:
        container.update({"executionRoleArn": where.execution_role,
                          "networkConfiguration": {"assignPublicIp": "ENABLED"},
                          "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
                          "runtimePlatform": {"operatingSystemFamily": "LINUX",
                                              "cpuArchitecture": CPU_ARCHITECTURES[architecture]}})
    container["logConfiguration"] = {"logDriver": "awslogs",
                                     "options": {"awslogs-group": where.log_group}}
    request = {"type": "container", "containerProperties": container, "retryStrategy": retry,
               "platformCapabilities": [where.platform], "propagateTags": True}
    if timeout:
        request["timeout"] = {"attemptDurationSeconds": timeout}
    return request


def content_hash(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]


# -- states -------------------------------------------------------------------------

def latest(summaries) -> dict[str, dict]:
    """Job id -> summary; a child listed twice (moto does; a child that moved on between two
    listings) keeps the later of its states."""
    children: dict[str, dict] = {}
    for summary in summaries:
        before = children.get(summary["jobId"])
        if before is None or _RANK.get(summary["status"], 0) >= _RANK.get(before["status"], 0):
            children[summary["jobId"]] = summary
    return children


def summary_of(job: dict) -> dict:
    """The ListJobs summary fields of a DescribeJobs record (what a known child keeps)."""
    out = {k: job[k] for k in ("jobId", "jobName", "status", "statusReason", "startedAt",
                               "stoppedAt", "createdAt") if k in job}
    index = (job.get("arrayProperties") or {}).get("index")
    if index is not None:
        out["arrayProperties"] = {"index": index}
    code = (job.get("container") or {}).get("exitCode")
    if code is not None:
        out["container"] = {"exitCode": code}
    return out


def merge(summary: dict, detail: dict | None) -> dict:
    """A child's ListJobs summary under its DescribeJobs record, keeping a known exit code."""
    job = {**summary, **(detail or {})}
    summary_code = (summary.get("container") or {}).get("exitCode")
    if exit_code(job) is None and summary_code is not None:
        job["container"] = {**(job.get("container") or {}), "exitCode": summary_code}
    return job


def submit_size(request: dict) -> int:
    """The bytes of a SubmitJob request as sent (JSON), which AWS Batch limits to 30 KiB."""
    return len(json.dumps(request, separators=(",", ":")).encode())


class AwsBatchQueue(BatchQueue):
    """Runs arrays on the stack's AWS Batch job queue."""

    grows_memory = True  # spmd_aws.memory: a task killed for memory runs again, larger
    caps_parallel = True  # max_parallel: waves of that size, each N_TO_N after the one before
    takes_secrets = True  # Secrets Manager, through the job definition (spmd_aws.secrets)

    def __init__(self, opts: AwsSettings, clients: Clients | None = None,
                 store: Callable[[], ObjectStore] | None = None):
        self.opts = opts
        self.clients = clients or opts.clients()
        self._store = store  # the job's store, where growing memory keeps its records
        self._lock = threading.Lock()
        self._deployment: Deployment | None = None
        self._definitions: dict[str, str] = {}
        self._ended: dict[str, dict] = {}  # child id -> DescribeJobs record; final, kept
        self._waiting: dict[str, str] = {}  # array id -> the RUNNABLE reason last seen
        self._sizes: list | None = None  # the compute environment's instance sizes
        self._unknown: dict[str, float] = {}  # job id -> when Batch first described nothing
        self._unplaced: set[str] = set()  # arrays ended here because the queue cannot place them
        self._outputs_seen: dict[str, set[int]] = {}  # spmd job -> tasks with an output (forgotten)
        self._known: dict[str, dict[str, dict]] = {}  # array -> child id -> its last summary
        self._memory_records: dict[str, dict] = {}  # spmd_aws.memory's records, read once
        self._secrets: dict[str, dict] = {}  # job id -> what spmd_aws.secrets.deliver made
        self._secrets_removed: set[str] = set()
        #: (job, task)s given UpstreamFailed outputs (spmd_aws.chain)
        self._written: set[tuple[str, int]] = set()
        self._due: dict[str, dict] = {}  # handle -> tasks to run again with more memory
        #: arrays whose failure budget is spent: CancelJob again while children wait
        self._stopping: set[str] = set()
        self._stopped_jobs: set[str] = set()  # spmd jobs whose pending work was cancelled
        self._unordered: set[str] = set()  # arrays whose children ended out of index order
        self._tails: dict[str, int] = {}  # spmd job -> lost tasks' tails read (TAILS_READ)

    def gpus(self, spec: ArraySpec) -> int | None:
        """GPUs per task: the Knot's (Knot(gpus=N)), else the profile's ``gpus`` default."""
        return spec.resources.gpus or self.opts.gpus

    @property
    def batch(self):
        return self.clients("batch")

    def deployment(self) -> Deployment:
        with self._lock:
            if self._deployment is None:
                self._deployment = deployment(self.opts)
            return self._deployment

    def definition_arn(self, spec: ArraySpec) -> str:
        """The ARN of the job definition for spec, registered only if no such one exists."""
        request = job_definition(spec, self.deployment(), self.gpus(spec), self.opts.architecture)
        delivered = self._secrets.get(spec.job_id)
        if delivered:  # the values stay in Secrets Manager: Batch's agent reads them
            request["containerProperties"].update(secrets=delivered["refs"],
                                                  executionRoleArn=delivered["role"])
        digest = content_hash(request)
        if digest in self._definitions:
            return self._definitions[digest]
        name = self.opts.stack.job_definition(digest)
        with boundary(AwsError, f"finding job definition {name}"):
            found = [d for page in self.batch.get_paginator("describe_job_definitions").paginate(
                        jobDefinitionName=name, status="ACTIVE") for d in page["jobDefinitions"]]
            found = [d for d in found if (d.get("tags") or {}).get(CONTENT_TAG) == digest]
            if found:
                arn = max(found, key=lambda d: d["revision"])["jobDefinitionArn"]
            else:
                self._log_group_exists(self.deployment())
                arn = self.batch.register_job_definition(
                    jobDefinitionName=name, tags={**self.opts.stack.tags, CONTENT_TAG: digest},
                    **request)["jobDefinitionArn"]
                log.info("registered job definition %s", arn)
        self._definitions[digest] = arn
        return arn

    def _log_group_exists(self, where: Deployment) -> None:
        """The stack's log group, which a new job definition names, made if missing (a stack
        an earlier spmd made has none; the awslogs driver does not create it)."""
        stack = self.opts.stack
        if where.log_group != stack.log_group:
            return  # AWS Batch's own /aws/batch/job
        logs = self.clients("logs")
        groups = logs.describe_log_groups(logGroupNamePrefix=stack.log_group)["logGroups"]
        if not any(g["logGroupName"] == stack.log_group for g in groups):
            ensure_log_group(logs, stack, self.opts.retention_days)

    def write_key(self, job_id: str) -> str:
        """The key job_id's tasks sign their writes with (spmd_aws.signing), hex."""
        if self._store is not None:
            return self._store().job_key(job_id).hex()
        opts = self.opts
        prefix = opts.prefix.strip("/") + "/" if opts.prefix.strip("/") else ""
        with boundary(AwsError, f"reading s3://{opts.bucket}/{prefix}{signing.SECRET_KEY}"):
            secret = signing.load_secret(self.clients("s3"), opts.bucket,
                                         prefix + signing.SECRET_KEY)
        return signing.job_key(secret, job_id).hex()

    def _requests(self, spec: ArraySpec, job_queue: str, definition: str,
                  write_key: str = "0" * 64) -> list[tuple[dict, int, int]]:
        """Each SubmitJob request with its (first task, size); ResourceError if one is too big."""
        out = []
        upstream = decode_handle(spec.after_handle) if spec.after_job and spec.after_handle else []
        for number, (offset, size) in enumerate(parts(spec.n_tasks, spec.max_parallel)):
            env = {**spec.env, "SPMD_IMAGE": spec.image, signing.ENV: write_key}
            if offset:
                env["SPMD_TASK_OFFSET"] = str(offset)
            if size == 1:
                env["SPMD_SINGLE_TASK"] = "1"
            request = {
                "jobName": f"{spec.job_id[:120]}-{number}",
                "jobQueue": job_queue,
                "jobDefinition": definition,
                "containerOverrides": {"environment": [
                    {"name": k, "value": v} for k, v in sorted(env.items())]},
                "tags": {**self.opts.stack.tags, "spmd:job": spec.job_id},
            }
            if size > 1:
                request["arrayProperties"] = {"size": size}
            if upstream:
                after = chain.depends_on(spec, offset, size, upstream)
                if after:
                    request["dependsOn"] = after
            overrides = submit_size(request["containerOverrides"])
            if overrides > MAX_OVERRIDES - BATCH_OVERRIDES:
                largest = max(spec.env, key=lambda k: len(spec.env[k]), default=None)
                raise ResourceError(
                    f"the environment of job {spec.job_id} is {overrides} bytes as ECS container "
                    f"overrides; ECS accepts at most {MAX_OVERRIDES} for the whole task, and AWS "
                    f"Batch adds about {BATCH_OVERRIDES} of its own, so env can take "
                    f"{MAX_OVERRIDES - BATCH_OVERRIDES} (a job above it is accepted and then "
                    f"fails). Make env smaller (its largest value is {largest!r}): pass large "
                    "data as an input of the function instead")
            if submit_size(request) > MAX_SUBMIT_BYTES:
                largest = max(spec.env, key=lambda k: len(spec.env[k]), default=None)
                raise ResourceError(
                    f"the SubmitJob request of job {spec.job_id} is {submit_size(request)} bytes; "
                    f"AWS Batch accepts at most {MAX_SUBMIT_BYTES} (30 KiB), environment "
                    f"included. Make env smaller (its largest value is {largest!r}): pass large "
                    "data as an input of the function instead")
            out.append((request, offset, size))
        return out

    def check(self, spec: ArraySpec) -> None:
        """What AWS would refuse, refused here before any AWS call (gpus on Fargate, the
        SubmitJob size, retries above Batch's 10 attempts)."""
        res = spec.resources
        resource_requirements(res, self.gpus(spec), self.opts.stack.fargate)
        if res.retries + 1 > MAX_ATTEMPTS:
            raise ResourceError(f"retries={res.retries}: AWS Batch runs a task at most "
                                f"{MAX_ATTEMPTS} times, so retries can be at most {MAX_ATTEMPTS - 1}")
        # ARNs as long as the stack's can be: the real ones are known only after provisioning
        self._requests(spec, "q" * 200, "d" * 240)
        if spec.after_job and spec.after_handle:
            chain.check(spec, decode_handle(spec.after_handle), bool(grows(spec.after_handle)))
        if res.more_memory:
            if self._store is None:
                raise ResourceError("this AwsBatchQueue has no store, so it cannot grow the "
                                    "memory of tasks; give one memory size")
            retry_strategy(res, MAX_ATTEMPTS, self.opts.stack.fargate,
                           bool(res.timeout) and res.timeout < MIN_TIMEOUT)
            for memory in res.more_memory:
                resource_requirements(replace(res, memory=memory), self.gpus(spec),
                                      self.opts.stack.fargate)

    def check_placeable(self, spec: ArraySpec, where: Deployment) -> None:
        """ResourceError when no instance of the deployed compute environment can hold a task
        of spec (Batch would keep it RUNNABLE until the queue's time limit cancels it)."""
        if where.platform != "EC2" or where.max_vcpus is None:
            return  # Fargate sizes are checked by resource_requirements
        if self._sizes is None:
            with boundary(AwsError, "looking up the compute environment's instance types"):
                self._sizes = instance_sizes(self.clients("ec2"), where.instance_types)
        check_fits(spec.resources, self.gpus(spec), self._sizes, where.max_vcpus,
                   f"{where.compute_environment} ({', '.join(where.instance_types)})")

    def deliver_secrets(self, job_id: str, secrets: tuple) -> dict[str, str]:
        """Secrets Manager secrets the job definition names (spmd_aws.secrets); no variable
        is added to SubmitJob's environment."""
        from . import secrets as aws_secrets
        self._secrets[job_id] = aws_secrets.deliver(self.clients, self.opts.stack, job_id,
                                                    tuple(secrets))
        return {}

    def _remove_secrets(self, handle: str, out: Mapping[int, TaskStatus]) -> None:
        """Once every task has ended, the job's secrets are deleted (once per process)."""
        data = json.loads(handle)
        job, delivered = data.get("job", ""), data.get("secrets")
        total = sum(size for _, _, size in decode_handle(handle))
        if not delivered or job in self._secrets_removed or len(out) < total \
                or any(status.state not in (SUCCEEDED, FAILED, CANCELLED)
                       for status in out.values()):
            return
        from . import secrets as aws_secrets
        aws_secrets.remove(self.clients, self.opts.stack, delivered)
        self._secrets_removed.add(job)

    def submit(self, spec: ArraySpec) -> str:
        try:
            return self._submit(spec)
        except BaseException:
            if spec.job_id in self._secrets:  # no task will read them
                from . import secrets as aws_secrets
                aws_secrets.remove(self.clients, self.opts.stack,
                                   self._secrets.pop(spec.job_id))
            raise

    def _submit(self, spec: ArraySpec) -> str:
        self.check(spec)
        if spec.resources.more_memory:
            from . import memory
            memory.save_spec(self._store(), spec)
        where = self.deployment()
        self.check_placeable(spec, where)
        definition = self.definition_arn(spec)
        requests = self._requests(spec, where.job_queue, definition, self.write_key(spec.job_id))
        submitted: list[tuple[str, int, int]] = []
        with boundary(AwsError, f"submitting job {spec.job_id} to AWS Batch"):
            try:
                for request, offset, size in requests:
                    if spec.max_parallel and submitted:  # the next wave follows this one
                        request["dependsOn"] = [*request.get("dependsOn", ()),
                                                waits_for(*submitted[-1][::2], size)]
                    submitted.append((self.batch.submit_job(**request)["jobId"], offset, size))
            except BaseException:
                for job_id, _, _ in submitted:  # leave no half-submitted job running
                    self._terminate(job_id)
                raise
        # "attempts" counts those for errors in the user's code: a task that succeeded is
        # described for its attempts only when it could have retried after such an error.
        after = {"job": spec.after_job, "handle": spec.after_handle} \
            if spec.after_job and spec.after_handle else None
        return encode_handle(submitted, spec.resources.retries + 1,
                             spec.job_id if spec.resources.more_memory else "", spec.job_id,
                             after, self._secrets.get(spec.job_id))

    def submit_one(self, spec: ArraySpec, name: str) -> str:
        """Submit a one-task spec as a plain job named name; its Batch job id."""
        request = self._requests(spec, self.deployment().job_queue, self.definition_arn(spec),
                                 self.write_key(spec.job_id))[0][0]
        request["jobName"] = name
        with boundary(AwsError, f"submitting {name} to AWS Batch"):
            return self.batch.submit_job(**request)["jobId"]

    def describe_cached(self, ids: list[str]) -> dict[str, dict]:
        """DescribeJobs records of ids, those of ended jobs read once and kept."""
        missing = [i for i in ids if i not in self._ended]
        with boundary(AwsError, "reading task states from AWS Batch"):
            found = self._describe(missing) if missing else {}
        for job_id, job in found.items():
            if job.get("status") in ("FAILED", "SUCCEEDED"):
                self._ended[job_id] = job
        return {i: self._ended.get(i) or found.get(i) for i in ids if i in self._ended or i in found}

    # -- reading states -------------------------------------------------------------

    def _children(self, parent: str, statuses) -> dict[str, dict]:
        """Child id -> ListJobs summary, for children in statuses (listed in that order)."""
        paginator = self.batch.get_paginator("list_jobs")
        return latest(summary for status in statuses
                      for page in paginator.paginate(arrayJobId=parent, jobStatus=status,
                                                     PaginationConfig={"PageSize": 1000})
                      for summary in page.get("jobSummaryList", ()))

    def _changed_children(self, parent: str, record: dict, describe=("FAILED",)) -> dict[str, dict]:
        """The array's children in _LISTED states, at a cost that grows with what moved since
        the last poll, not with the array (the parent's arrayProperties.statusSummary counts
        them per state; an array where nothing moved costs no request):

        - the RUNNING children are listed (a page per 1,000 running, bounded by capacity);
          those known RUNNING and no longer listed are described (100 per DescribeJobs),
          which gives their end, or RUNNABLE again for a retry;
        - children that ended without being seen running (a fast task, a slow poll) are
          found by describing the lowest indices not yet known (Batch places an array's
          children in index order), when that takes fewer requests than listing those
          states from the first page (1,000 per page); a probe that misses lists anyway, and
          the array is listed from then on.

        Described children whose state is in ``describe`` keep their record in _ended (they
        are not described again)."""
        counts = (record.get("arrayProperties") or {}).get("statusSummary")
        known = self._known.setdefault(parent, {})
        if counts is None:  # no per-state counts: list every state
            for status in _LISTED:
                self._take(known, self._children(parent, (status,)))
            return dict(known)
        have = self._have(known)
        if all(counts.get(status, 0) == have[status] for status in _LISTED):
            return dict(known)
        running = self._children(parent, ("RUNNING",)) if counts.get("RUNNING") else {}
        left = [c for c, s in known.items() if s["status"] == "RUNNING" and c not in running]
        self._take(known, running)
        if left:
            self._take_described(known, left, describe)
        have = self._have(known)
        missing = {status: counts.get(status, 0) - have[status] for status in ("SUCCEEDED", "FAILED")}
        want = sum(n for n in missing.values() if n > 0)
        if not want:
            return dict(known)
        pages = [-(-counts.get(status, 0) // 1000) for status, n in missing.items() if n > 0]
        if parent not in self._unordered and max(pages) > 1 and -(-want // 100) < sum(pages):
            size = int((record.get("arrayProperties") or {}).get("size") or 0)
            unknown = (f"{parent}:{i}" for i in range(size) if f"{parent}:{i}" not in known)
            probe = [c for _, c in zip(range(want), unknown)]
            self._take_described(known, probe, describe)
            have = self._have(known)
            if all(counts.get(status, 0) <= have[status] for status in missing):
                return dict(known)
            self._unordered.add(parent)
        for status in ("SUCCEEDED", "FAILED"):
            if counts.get(status, 0) != self._have(known)[status]:
                self._take(known, self._children(parent, (status,)))
        return dict(known)

    @staticmethod
    def _have(known: dict[str, dict]) -> dict[str, int]:
        have = dict.fromkeys(_LISTED, 0)
        for summary in known.values():
            have[summary["status"]] = have.get(summary["status"], 0) + 1
        return have

    @staticmethod
    def _take(known: dict[str, dict], listed: dict[str, dict]) -> None:
        """Listed children into known, each keeping the later of its states (one listed in
        another state than asked for, e.g. RUNNABLE again, is pending)."""
        for child, summary in listed.items():
            before = known.get(child)
            if summary["status"] not in _LISTED:
                if before is not None and before["status"] == "RUNNING":
                    del known[child]
                continue
            if before is None or _RANK.get(summary["status"], 0) >= _RANK.get(before["status"], 0):
                known[child] = summary

    def _take_described(self, known: dict[str, dict], ids: list[str], describe) -> None:
        """Children described (100 per request) into known, as compact summaries; one no
        longer in a _LISTED state (RUNNABLE again for a retry) is pending again."""
        for child, job in self._describe(ids).items():
            status = job.get("status")
            if status not in _LISTED:
                known.pop(child, None)
                continue
            if status in describe and status in ("FAILED", "SUCCEEDED"):
                self._ended[child] = job
            known[child] = summary_of(job)

    def _describe(self, ids: list[str]) -> dict[str, dict]:
        out = {}
        for i in range(0, len(ids), 100):
            for job in self.batch.describe_jobs(jobs=ids[i:i + 100])["jobs"]:
                out[job["jobId"]] = job
        return out

    def _forgotten(self, job_id: str) -> bool:
        """Whether Batch has described nothing for job_id for FORGOTTEN_AFTER seconds: it has
        dropped a job that ended long ago (DescribeJobs returns only the jobs it knows). The
        wait covers a job submitted a moment ago that Batch does not list yet."""
        first = self._unknown.setdefault(job_id, time.monotonic())
        return time.monotonic() - first >= FORGOTTEN_AFTER

    def _forgotten_states(self, handle: str, batch_id: str, tasks) -> dict[int, TaskStatus]:
        """The states of tasks of a Batch job Batch forgot, from what the store holds: a task
        with an output SUCCEEDED, any other lost (one listing of the job's outputs, kept)."""
        spmd_job = json.loads(handle).get("job", "")
        if spmd_job not in self._outputs_seen:
            done: set[int] = set()
            if spmd_job and self._store is not None:
                from spmd import layout
                store = self._store()
                done = {layout.task_of_output_key(key)
                        for key in store.list(layout.output_prefix(spmd_job))}
            self._outputs_seen[spmd_job] = done
        done = self._outputs_seen[spmd_job]
        return {task: TaskStatus(SUCCEEDED, 1, 0) if task in done else forgotten_status(batch_id)
                for task in tasks}

    def _why_waiting(self, parent: str) -> str:
        """The statusReason of one RUNNABLE child (one request): why the array's queue is
        blocked (MISCONFIGURATION:..., CAPACITY:...), or ''."""
        page = self.batch.list_jobs(arrayJobId=parent, jobStatus="RUNNABLE", maxResults=1)
        reasons = [s.get("statusReason") or "" for s in page.get("jobSummaryList", ())]
        reason = next((r for r in reasons if r.startswith(UNPLACEABLE)), "")
        if reason:
            self._waiting[parent] = reason
        return reason

    def states(self, handle: str) -> Mapping[int, TaskStatus]:
        out: dict[int, TaskStatus] = {}
        # With one attempt allowed, a task that succeeded had exactly one: no need to ask.
        describe = ("FAILED",) if max_attempts(handle) == 1 else ("FAILED", "SUCCEEDED")
        with boundary(AwsError, "reading task states from AWS Batch"):
            # the arrays' parents first (100 per DescribeJobs): their per-state counts say
            # which children to list, and a parent Batch does not describe may be forgotten
            parents = self._describe([j for j, _, size in decode_handle(handle) if size > 1])
            for job_id, offset, size in decode_handle(handle):
                if size == 1:
                    jobs = self._describe([job_id])
                    if job_id not in jobs and self._forgotten(job_id):
                        out.update(self._forgotten_states(handle, job_id, [offset]))
                        continue
                    if job_id in jobs:
                        self._unknown.pop(job_id, None)
                        if jobs[job_id].get("status") in ("FAILED", "SUCCEEDED"):
                            self._ended[job_id] = jobs[job_id]
                        elif (jobs[job_id].get("statusReason") or "").startswith(UNPLACEABLE):
                            self._waiting[job_id] = jobs[job_id]["statusReason"]
                        out[offset] = task_status(jobs[job_id], self._waiting.get(job_id, ""))
                    continue
                if job_id not in parents:  # submitted a moment ago, or forgotten
                    if self._forgotten(job_id):
                        out.update(self._forgotten_states(handle, job_id,
                                                          range(offset, offset + size)))
                    continue
                self._unknown.pop(job_id, None)
                if job_id in self._stopping:
                    self._cancel_again(job_id, parents[job_id])
                children = self._changed_children(job_id, parents[job_id], describe)
                ended = [c for c, s in children.items() if s["status"] in describe
                         and c not in self._ended]
                self._ended.update(self._describe(ended))
                waiting = self._waiting.get(job_id, "")
                for child, summary in children.items():
                    index = (summary.get("arrayProperties") or {}).get("index")
                    index = int(child.rsplit(":", 1)[1]) if index is None else int(index)
                    detail = self._ended.get(child) if summary["status"] in describe else None
                    if summary["status"] == "SUCCEEDED" and detail is None:
                        detail = {"attempts": [{}]}
                    out[offset + index] = task_status(merge(summary, detail), waiting)
                if self._end_unplaceable(job_id, offset, size, children, out):
                    continue
                counts = (parents[job_id].get("arrayProperties") or {}).get("statusSummary")
                if len(children) < size and job_id not in self._stopping \
                        and (counts is None or counts.get("RUNNABLE")):
                    reason = self._why_waiting(job_id)
                    if reason:
                        for task in range(offset, offset + size):
                            out.setdefault(task, TaskStatus(reason=reason))
        if grows(handle):
            from . import memory
            self._due[handle] = memory.grow(self.describe_cached, self._memory_records,
                                            self._store, grows(handle), out,
                                            lambda: self._pending_stopped(handle))
        after = chain.after_of(handle)
        if after and self._store is not None:
            self._upstream_failed(handle, after, out)
        self._remove_secrets(handle, out)
        return out

    def _upstream_failed(self, handle: str, after: dict, out: dict[int, TaskStatus]) -> None:
        """Each task Batch failed because its upstream task failed gets an output of
        UpstreamFailed errors (spmd_aws.chain), written once."""
        spmd_job = json.loads(handle).get("job", "")
        for job_id, offset, size in decode_handle(handle):
            for task in range(offset, offset + size):
                status = out.get(task)
                if status is None or status.state != FAILED or (spmd_job, task) in self._written \
                        or not status.reason.startswith(NOT_RUN):
                    continue
                record = self._ended.get(child_id(job_id, offset, size, task))
                if chain.dependency_failed(record):
                    self._written.add((spmd_job, task))
                    chain.write_failed(self, self._store(), after, spmd_job, task, record)

    def _end_unplaceable(self, parent: str, offset: int, size: int, children: dict[str, dict],
                         out: dict[int, TaskStatus]) -> bool:
        """Once the queue's time limit ended one child as never placed, end the whole array
        (one TerminateJob) and give every task not ended that child's reason; whether it did.

        jobStateTimeLimitActions acts on the job at the head of the queue only, one per
        period: the other children would wait their turn (8,334 at 600 s: 58 days, the queue
        blocked all along)."""
        first_task = next((t for t in range(offset, offset + size) if t in out and
                           out[t].state == FAILED and out[t].reason.startswith(NEVER_PLACED)), None)
        if first_task is None:
            return False
        first = out[first_task]
        rest = [t for t in range(offset, offset + size)
                if t not in out or out[t].state not in (FAILED, SUCCEEDED, CANCELLED)]
        if rest and parent not in self._unplaced:
            self._unplaced.add(parent)
            child = child_id(parent, offset, size, first_task)
            cause = (self._ended.get(child) or children.get(child) or {}).get("statusReason", "")
            log.warning("AWS Batch cannot place array %s (%s): ending its %d other tasks",
                        parent, cause, len(rest))
            try:
                self.batch.terminate_job(jobId=parent, reason=f"{UNPLACED_REASON}: {cause}"[:1024])
            except Exception as exc:
                log.warning("could not terminate Batch job %s: %s", parent, error_code(exc) or exc)
        for task in rest:
            out[task] = TaskStatus(FAILED, 0, None, first.reason, first.lost)
        return True

    # -- cancel and logs ------------------------------------------------------------------

    def _terminate(self, job_id: str) -> None:
        try:
            self.batch.terminate_job(jobId=job_id, reason=CANCEL_REASON)
        except Exception as exc:
            log.warning("could not terminate Batch job %s: %s", job_id, error_code(exc) or exc)

    def cancel(self, handle: str) -> None:
        """TerminateJob on each array parent (or plain job): Batch cancels or terminates the
        children with their parent ("Array jobs", AWS Batch user guide)."""
        with boundary(AwsError, "cancelling tasks on AWS Batch"):
            for job_id, _, _ in decode_handle(handle):
                self._terminate(job_id)
            if grows(handle):
                from . import memory
                for records in memory.records(self._store(), grows(handle)).values():
                    for record in records:
                        self._terminate(record["id"])

    def cancel_pending(self, handle: str) -> None:
        """The failure budget is spent: CancelJob on each array parent (or plain job) and on
        each task run again with more memory. Batch cancels what has not started
        (SUBMITTED, PENDING, RUNNABLE; for an array parent, its children; a PENDING job once
        its dependencies have ended, so a max_parallel wave or chained array never starts)
        and leaves STARTING and RUNNING jobs alone ("CancelJob", AWS Batch API Reference).
        Later polls of this process cancel an array again while it has RUNNABLE children (a
        retry queued after the first cancel); no task is run again with more memory."""
        spmd_job = json.loads(handle).get("job", "")
        with boundary(AwsError, "cancelling the tasks that have not started on AWS Batch"):
            if spmd_job and self._store is not None:  # other clients: no memory resubmission
                self._store().put(self._stopped_key(spmd_job), BUDGET_REASON.encode())
            self._stopped_jobs.add(spmd_job or handle)
            for job_id, _, size in decode_handle(handle):
                self._cancel(job_id)
                if size > 1:
                    self._stopping.add(job_id)
            if grows(handle):
                from . import memory
                for records in memory.records(self._store(), grows(handle)).values():
                    for record in records:
                        self._cancel(record["id"])

    @staticmethod
    def _stopped_key(spmd_job: str) -> str:
        from spmd import layout
        return f"{layout.prefix(spmd_job)}queue/pending-cancelled"

    def _pending_stopped(self, handle: str) -> bool:
        """Whether the job's failure budget stopped its pending work (here or in another
        client: one HEAD, asked only when a task would run again with more memory)."""
        spmd_job = json.loads(handle).get("job", "")
        if (spmd_job or handle) not in self._stopped_jobs and spmd_job \
                and self._store is not None and self._store().exists(self._stopped_key(spmd_job)):
            self._stopped_jobs.add(spmd_job)
        return (spmd_job or handle) in self._stopped_jobs

    def _cancel(self, job_id: str) -> None:
        try:
            self.batch.cancel_job(jobId=job_id, reason=BUDGET_REASON)
        except Exception as exc:
            log.warning("could not cancel Batch job %s: %s", job_id, error_code(exc) or exc)

    def _cancel_again(self, parent: str, record: dict) -> None:
        """CancelJob on an array parent again while its statusSummary counts children waiting
        to be placed (RUNNABLE, SUBMITTED); one request per poll at most, and none once no
        child waits or runs."""
        counts = (record.get("arrayProperties") or {}).get("statusSummary") or {}
        if counts.get("RUNNABLE") or counts.get("SUBMITTED"):
            self._cancel(parent)
        elif counts and not (counts.get("RUNNING") or counts.get("STARTING")):
            self._stopping.discard(parent)

    def advance(self, handle: str, states: Mapping[int, TaskStatus]) -> None:
        """The watching client's part (spmd.Job's poll): tasks killed for memory run again
        at the next size (spmd_aws.memory.resubmit); states() never submits."""
        due = self._due.pop(handle, None)
        if due and not self._pending_stopped(handle):
            from . import memory
            with boundary(AwsError, "submitting tasks again with more memory"):
                memory.resubmit(self.submit_one, self._store, grows(handle), due)

    def logs(self, handle: str, task: int) -> str:
        """The tail of each attempt's log stream, from the job record states() already read
        (one DescribeJobs only for a task it did not need to describe)."""
        for job_id, offset, size in decode_handle(handle):
            if offset <= task < offset + size:
                break
        else:
            return ""
        ids = [child_id(job_id, offset, size, task)]
        if grows(handle):  # the task again with more memory, as jobs of its own
            from . import memory
            ids += memory.grown_jobs(self._store(), grows(handle), task)
        with boundary(AwsError, f"reading the log of task {task} from CloudWatch Logs"):
            jobs = self.describe_cached(ids)
            # (group, stream, why its job ended when another followed)
            streams: list[tuple[str, str, str]] = []
            found = [jobs[i] for i in ids if i in jobs]
            for number, job in enumerate(found, 1):
                own = [(a.get("container") or {}).get("logStreamName")
                       for a in job.get("attempts") or ()]
                own.append((job.get("container") or {}).get("logStreamName"))
                own = [s for s in dict.fromkeys(own) if s]
                why = "" if number == len(found) else task_status(job).reason
                streams += [(log_group(job), s, why if k == len(own) - 1 else "")
                            for k, s in enumerate(own)]
            parts = []
            for number, (group, stream, why) in enumerate(streams, 1):
                text = self._tail(group, stream)
                if len(streams) > 1:
                    text = f"--- spmd: attempt {number} ---\n" + text
                if why:
                    text += f"spmd: the task was stopped: {why}\n"
                parts.append(text)
        return "".join(parts)

    def log_part(self, handle: str, task: int, start: int) -> tuple[bytes, int]:
        """A tail (start < 0: what a lost task's error shows) is the last TAIL_EVENTS events of
        its last attempt's stream, one GetLogEvents with a limit; else the whole log."""
        if start >= 0:
            return super().log_part(handle, task, start)
        spmd_job = json.loads(handle).get("job", "") or handle
        read = self._tails.get(spmd_job, 0)
        if read >= TAILS_READ:
            data = (f"spmd: this log was not read here ({TAILS_READ} tails of this job were, to "
                    f"keep CloudWatch Logs requests few); its item's job.logs(item) or `spmd "
                    f"logs {json.loads(handle).get('job') or '<job>'} <item>` reads it\n").encode()
            return data, len(data)
        self._tails[spmd_job] = read + 1
        for job_id, offset, size in decode_handle(handle):
            if offset <= task < offset + size:
                break
        else:
            return b"", 0
        ids = [child_id(job_id, offset, size, task)]
        if grows(handle):
            from . import memory
            ids += memory.grown_jobs(self._store(), grows(handle), task)
        with boundary(AwsError, f"reading the log of task {task} from CloudWatch Logs"):
            jobs = self.describe_cached(ids)
            last = next((jobs[i] for i in reversed(ids) if i in jobs), None)
            streams = [s for s in ((a.get("container") or {}).get("logStreamName")
                                   for a in (last or {}).get("attempts") or ()) if s]
            stream = streams[-1] if streams else \
                ((last or {}).get("container") or {}).get("logStreamName")
            text = self._tail(log_group(last), stream, TAIL_EVENTS) if stream else ""
        data = text.encode()[start:]
        return data, len(data)

    def _tail(self, group: str, stream: str, limit: int | None = None) -> str:
        """The last events of a log stream, one GetLogEvents request (startFromHead=False
        returns the newest page: up to 10,000 events or 1 MB, or ``limit`` events, oldest
        first)."""
        request = {"limit": limit} if limit else {}
        try:
            page = self.clients("logs").get_log_events(
                logGroupName=group, logStreamName=stream, startFromHead=False, **request)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return ""
            raise
        lines = [event["message"] for event in page.get("events", ())]
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def log_group(job: dict) -> str:
    """The log group of a job's streams: its container's awslogs-group (the stack's), or
    AWS Batch's default one (jobs of spmd before the stack had a group)."""
    config = (job.get("container") or {}).get("logConfiguration") or {}
    return (config.get("options") or {}).get("awslogs-group") or LOG_GROUP
