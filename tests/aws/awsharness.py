"""The moto-to-AWS bridges of the AWS tests, and helpers the test modules share.

moto 5.2.5 runs each Batch job in a real container, but differs from AWS in ways the
backend must not have to know about. Each bridge below makes moto behave like AWS in one
respect and says which; spmd_aws itself never knows about any of them.

    any client's SubmitJob ──> moto (patched in this process): the job's command runs
        behind SHIM, and its env gets fake credentials and what SHIM needs
    any client's TerminateJob on an array parent ──> its children are terminated too
    any client's CancelJob ──> the job and its children not started (held back) cancelled
    any client's UpdateComputeEnvironment ──> its computeResources are applied
    SHIM in the container ──> Scheduler (HTTP on the Docker bridge): capacity, attempts
    spmd_aws's ListJobs/DescribeJobs ──> botocore hooks fill in what AWS would say
    any client's ListJobs ──> pages of at most 1,000 (maxResults, nextToken), as AWS's
    any client's DescribeJobs of more than 100 ids ──> refused, as AWS does
    spmd_aws's Create/UpdateJobQueue ──> DescribeJobQueues gives back jobStateTimeLimitActions
    moto's jobs ──> write their logs to the job definition's awslogs-group
    moto's jobs ──> wait for their dependsOn as AWS does (N_TO_N by index, whole arrays)
    SHIM ──> the job definition's secrets read from moto's Secrets Manager into the env
    docker events ──> vCPU and memory limits applied; kills for memory remembered
"""
from __future__ import annotations

import copy
import json
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing"}


def moto_config(endpoint: str, **config) -> dict:
    """Change moto's own configuration (e.g. ``batch={"use_docker": False}``)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=json.dumps(config).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def settings_of(config: dict):
    from spmd.config import resolve
    return resolve(config)


# Runs in the task container in front of the job's command (python3 -m spmd_aws.task ...).
SHIM = r"""
import json, os, subprocess, sys, time, urllib.parse, urllib.request
job = os.environ.get("AWS_BATCH_JOB_ID", "")
service = os.environ.pop("SPMD_TEST_SCHEDULER")

def tell(what, **query):
    try:
        url = f"{service}/{what}?" + urllib.parse.urlencode({"job": job, **query})
        return urllib.request.urlopen(url, timeout=30).read().decode()
    except OSError:
        return ""

# AWS sets AWS_BATCH_JOB_ARRAY_INDEX in an array's child; moto only sets
# AWS_BATCH_JOB_ID=<parent>:<index>.
if ":" in job and "AWS_BATCH_JOB_ARRAY_INDEX" not in os.environ:
    os.environ["AWS_BATCH_JOB_ARRAY_INDEX"] = job.rsplit(":", 1)[1]
# AWS's ECS agent puts the job definition's secrets (valueFrom: a Secrets Manager ARN) in
# the container's environment as it starts, read with the execution role ("Specifying
# sensitive data", AWS Batch user guide); moto ignores them. Read here, in the container.
endpoint = os.environ.pop("SPMD_TEST_ENDPOINT")
for ref in json.loads(os.environ.pop("SPMD_TEST_SECRETS")):
    scope = "testing/20260101/us-east-1/secretsmanager/aws4_request"
    request = urllib.request.Request(
        endpoint, data=json.dumps({"SecretId": ref["valueFrom"]}).encode(),
        headers={"X-Amz-Target": "secretsmanager.GetSecretValue",
                 "Content-Type": "application/x-amz-json-1.1",
                 "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, "
                                  "Signature=0"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        os.environ[ref["name"]] = json.loads(answer.read())["SecretString"]
# AWS starts a job only when its compute environment has room for it (maxvCpus), an
# array's children in order; moto starts every job at once.
place = {"pool": os.environ.pop("SPMD_TEST_POOL"), "capacity": os.environ.pop("SPMD_TEST_CAPACITY"),
         "vcpus": os.environ["SPMD_TEST_LIMITS"].split(",")[0]}
while tell("start", **place) == "wait":
    time.sleep(0.2)
# AWS runs a failed job again, up to retryStrategy.attempts times, as its evaluateOnExit
# rules say (first match wins; no match: RETRY), and numbers the attempts in
# AWS_BATCH_JOB_ATTEMPT; moto runs it once. The shim sees only the process's exit: a
# container.reason is empty then, which "onReason": "*" matches; onStatusReason rules
# (image or host lost) never match a process exit.
import fnmatch
strategy = json.loads(os.environ.pop("SPMD_TEST_RETRY_STRATEGY"))

def action(code):
    for rule in strategy.get("evaluateOnExit", ()):
        if ("onExitCode" in rule and fnmatch.fnmatchcase(str(code), rule["onExitCode"])) \
                or ("onReason" in rule and fnmatch.fnmatchcase("", rule["onReason"])):
            return rule.get("action", "").upper()
    return "RETRY"

for attempt in range(1, strategy.get("attempts", 1) + 1):
    tell("attempt", n=attempt)
    os.environ["AWS_BATCH_JOB_ATTEMPT"] = str(attempt)
    code = subprocess.call(sys.argv[1:])
    code = 128 - code if code < 0 else code
    if code == 0 or action(code) == "EXIT":
        break
tell("end")
sys.exit(code)
"""


def _moto_job(job_id: str):
    from moto.batch.models import batch_backends
    return batch_backends[ACCOUNT][REGION].get_job_by_id(job_id)


def _awslogs_group(definition) -> str:
    config = (definition.container_properties or {}).get("logConfiguration") or {}
    return (config.get("options") or {}).get("awslogs-group", "")


def _ended(job_id: str) -> bool:
    job = _moto_job(job_id)
    return job is None or job.stop or job.job_stopped


def _dependency_ended(job, dependency: dict) -> str:
    """'' while the job a dependency names runs, else SUCCEEDED or FAILED, as AWS reads it:
    an N_TO_N entry names the child of the same index; an array parent has ended when its
    children have, FAILED if one did ("Array jobs": a parent is FAILED when a child fails)."""
    target = dependency["jobId"]
    index = (job.array_properties or {}).get("index")
    if dependency.get("type") == "N_TO_N" and index is not None:
        target = f"{target}:{index}"
    found = job.all_jobs.get(target)
    if found is None:
        return ""
    jobs = found._child_jobs or [found]
    states = [j.status for j in jobs]
    if "FAILED" in states and all(j.job_stopped for j in jobs):
        return "FAILED"
    return "SUCCEEDED" if all(s == "SUCCEEDED" for s in states) else ""


def _wait_for_dependencies(job) -> bool:
    """AWS starts a job once every job of its dependsOn has SUCCEEDED, an N_TO_N entry
    meaning the child of the same index, and fails it without running it, statusReason
    "Dependent Job failed", once one has FAILED ("Job dependencies", AWS Batch user guide).
    moto 5.2.5 waits for the named job itself (an array parent it never marks ended, so an
    N_TO_N child waits forever) and fails a job without a reason."""
    import time
    while True:
        ended = [_dependency_ended(job, d) for d in job.depends_on or ()]
        if "FAILED" in ended:
            job.job_stopped_reason = "Dependent Job failed"
            job._mark_stopped(success=False)
            return False
        if all(e == "SUCCEEDED" for e in ended):
            return True
        if job.stop:  # cancelled while it waited
            job._mark_stopped(success=False)
            return False
        time.sleep(0.5)


class Scheduler:
    """What AWS Batch's scheduler knows and moto does not: which jobs the compute
    environment has room for (the rest stay RUNNABLE), and each job's attempts.
    SHIM asks it over HTTP; it reads moto's jobs directly (it runs in moto's process)."""

    def __init__(self, host: str):
        self.lock = threading.Lock()
        self.granted: dict[str, tuple[str, float]] = {}  # job id -> (pool, vcpus)
        self.attempts: dict[str, int] = {}
        self.next_child: dict[str, int] = {}  # array job id -> index of the next child to start
        scheduler = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
                body = scheduler.handle(url.path.strip("/"), query).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = "http://%s:%d" % self.server.server_address[:2]
        threading.Thread(target=self.server.serve_forever, daemon=True,
                         name="spmd-test-scheduler").start()

    def handle(self, what: str, query: dict) -> str:
        job = query["job"]
        with self.lock:
            if what == "attempt":
                self.attempts[job] = int(query["n"])
            elif what == "end":
                self.granted.pop(job, None)
            elif what == "start":
                return "go" if self._start(job, query["pool"], float(query["capacity"]),
                                           float(query["vcpus"])) else "wait"
        return "ok"

    def _start(self, job: str, pool: str, capacity: float, vcpus: float) -> bool:
        for held in [j for j in self.granted if _ended(j)]:
            del self.granted[held]  # killed without saying so
        if _ended(job):
            return False  # terminated while it waited: AWS never starts it
        parent, _, index = job.partition(":")
        if index:
            following = self.next_child.get(parent, 0)
            while following < int(index) and _ended(f"{parent}:{following}"):
                following += 1  # a child cancelled before it could start
            self.next_child[parent] = following
            if int(index) != following:
                return False
        used = sum(v for p, v in self.granted.values() if p == pool)
        if used and used + vcpus > capacity + 1e-9:
            return False
        self.granted[job] = (pool, vcpus)
        if index:
            self.next_child[parent] = int(index) + 1
        return True

    def waiting(self, job_id: str) -> bool:
        """Whether moto runs a job that AWS would still hold back (RUNNABLE)."""
        with self.lock:
            return job_id not in self.granted and job_id not in self.attempts

    def stop(self) -> None:
        self.server.shutdown()


class Harness:
    """The moto-to-AWS bridges, and a record of the API calls spmd_aws makes."""

    def __init__(self, boto, registry: str, host: str):
        self.boto = boto
        self.registry = registry
        self.calls: list[tuple[str, str, dict]] = []
        self.pushes: list[str] = []
        self.out_of_memory: set[str] = set()  # names of containers the kernel killed
        self.scheduler = Scheduler(host)
        self.time_limit_actions: dict[str, list] = {}  # job queue name -> its actions
        self._events = None
        self._undo: list = []

    def count(self, service: str, operation: str) -> int:
        return sum(1 for s, o, _ in self.calls if (s, o) == (service, operation))

    # -- installing ----------------------------------------------------------------------

    def install(self, events, monkeypatch, engine=None) -> None:
        """Hooks on spmd_aws's botocore session, patches of moto and spmd_aws's registry."""
        from moto.batch.models import BatchBackend

        from spmd_aws.registry import EcrRegistry
        hooks = [("provide-client-params", self.record),
                 ("after-call.batch.DescribeJobs", self.exit_codes),
                 ("after-call.batch.DescribeJobs", self.scheduled),
                 ("after-call.batch.ListJobs", self.scheduled),
                 ("after-call.batch.DescribeJobs", self.oom_reason),
                 ("after-call.batch.ListJobs", self.oom_reason),
                 ("after-call.batch.DescribeJobs", self.log_configuration),
                 ("provide-client-params.batch.CreateJobQueue", self.queue_actions),
                 ("provide-client-params.batch.UpdateJobQueue", self.queue_actions),
                 ("after-call.batch.DescribeJobQueues", self.described_queues)]
        for number, (event, handler) in enumerate(hooks):
            events.register(event, handler, unique_id=f"spmd-test-{number}")
            self._undo.append(lambda e=event, n=number: events.unregister(
                e, unique_id=f"spmd-test-{n}"))
        submit_job = BatchBackend.submit_job
        harness = self

        def submit(backend, job_name, job_def_id, job_queue, *args, **kwargs):
            kwargs["container_overrides"] = harness.container_overrides(
                backend, job_def_id, job_queue, kwargs.get("container_overrides"))
            return submit_job(backend, job_name, job_def_id, job_queue, *args, **kwargs)
        monkeypatch.setattr(BatchBackend, "submit_job", submit)
        terminate_job = BatchBackend.terminate_job

        def terminate(backend, job_id, reason):
            """AWS terminates an array's children with their parent ("Array jobs", AWS Batch
            user guide); moto stops only the parent."""
            terminate_job(backend, job_id, reason)
            job = backend.get_job_by_id(job_id)
            for child in (getattr(job, "_child_jobs", None) or ()):
                terminate_job(backend, child.job_id, reason)
        monkeypatch.setattr(BatchBackend, "terminate_job", terminate)
        scheduler = self.scheduler

        def cancel(backend, job_id, reason):
            """AWS's CancelJob cancels a job that has not started (SUBMITTED, PENDING,
            RUNNABLE) and, given an array parent, its children that have not; STARTING and
            RUNNING ones go on ("CancelJob", AWS Batch API Reference). moto cancels only the
            job it is given, and runs every child at once: a child the harness holds back for
            capacity (RUNNABLE on AWS) is cancelled too, atomically with its start."""
            job = backend.get_job_by_id(job_id)
            for target in ([job, *(job._child_jobs or ())] if job is not None else ()):
                with scheduler.lock:
                    held = target.job_id not in scheduler.granted \
                        and target.job_id not in scheduler.attempts
                    if target.status in ("SUBMITTED", "PENDING", "RUNNABLE") or \
                            (target.status in ("STARTING", "RUNNING") and held):
                        target.terminate(reason)
        monkeypatch.setattr(BatchBackend, "cancel_job", cancel)
        update_environment = BatchBackend.update_compute_environment

        def update(backend, compute_environment_name, state, compute_resources, service_role):
            """AWS's UpdateComputeEnvironment changes the computeResources it is given in
            place ("Updating compute environments", AWS Batch user guide); moto ignores them."""
            out = update_environment(backend, compute_environment_name, state,
                                     compute_resources, service_role)
            if compute_resources:
                backend.get_compute_environment(
                    compute_environment_name).compute_resources.update(compute_resources)
            return out
        monkeypatch.setattr(BatchBackend, "update_compute_environment", update)
        from moto.batch.responses import BatchResponse
        list_jobs, describe_jobs = BatchResponse.listjobs, BatchResponse.describejobs

        def listjobs(response) -> str:
            """AWS's ListJobs returns at most maxResults summaries (1,000 when not given, at
            most 1,000) and a nextToken for the rest ("ListJobs", AWS Batch API Reference);
            moto returns them all at once, which would undercount the requests."""
            out = json.loads(list_jobs(response))
            size = min(int(response._get_param("maxResults") or 1000), 1000)
            start = int(response._get_param("nextToken") or 0)
            summaries = out["jobSummaryList"]
            out["jobSummaryList"] = summaries[start:start + size]
            if start + size < len(summaries):
                out["nextToken"] = str(start + size)
            return json.dumps(out)
        monkeypatch.setattr(BatchResponse, "listjobs", listjobs)

        def describejobs(response) -> str:
            """AWS's DescribeJobs takes at most 100 job ids ("DescribeJobs", AWS Batch API
            Reference); moto takes any number."""
            jobs = response._get_param("jobs") or []
            if len(jobs) > 100:
                from moto.batch.exceptions import ClientException
                raise ClientException(f"jobs: {len(jobs)} ids; at most 100 are allowed")
            return describe_jobs(response)
        monkeypatch.setattr(BatchResponse, "describejobs", describejobs)
        import moto.batch.models as batch_models
        # AWS Batch's instanceTypes take "default_x86_64" and "default_arm64" besides
        # "optimal" (CreateComputeEnvironment, ComputeResource.instanceTypes); moto knows
        # only "optimal"
        monkeypatch.setattr(batch_models, "EC2_INSTANCE_FAMILIES",
                            [*batch_models.EC2_INSTANCE_FAMILIES, "default_x86_64", "default_arm64"])
        find_instances = BatchBackend.find_min_instances_to_meet_vcpus
        bundles = {"default_x86_64": "m5", "default_arm64": "m6g"}  # families of each bundle

        def instances(instance_types, target):
            return find_instances([bundles.get(t, t) for t in instance_types], target)
        monkeypatch.setattr(BatchBackend, "find_min_instances_to_meet_vcpus", staticmethod(instances))
        from moto.batch.models import Job
        job_init = Job.__init__

        def job(self, *args, **kwargs):
            """AWS's awslogs driver writes to the group the job definition's logConfiguration
            names; moto always writes to /aws/batch/job."""
            job_init(self, *args, **kwargs)
            self._log_group = _awslogs_group(self.job_definition) or self._log_group
        monkeypatch.setattr(Job, "__init__", job)
        monkeypatch.setattr(Job, "_wait_for_dependencies", _wait_for_dependencies)
        publish = EcrRegistry.publish

        def published(registry, local_image, tag):
            reference = publish(registry, local_image, tag)
            harness.pushes.append(reference)
            return reference
        monkeypatch.setattr(EcrRegistry, "publish", published)
        if engine is not None:
            self.watch_containers(engine)

    def uninstall(self) -> None:
        for undo in self._undo:
            undo()
        if self._events is not None:
            self._events.close()
        self.scheduler.stop()

    # -- what spmd_aws asks ---------------------------------------------------------------

    def record(self, params, model, **_):
        """Every request as spmd_aws made it (a streamed Body, which holds locks, by its size)."""
        params = {k: (f"<stream of {len(v)} bytes>" if k == "Body" and hasattr(v, "read")
                      and hasattr(v, "__len__") else copy.deepcopy(v) if k != "Body" else v)
                  for k, v in params.items()}
        self.calls.append((model.service_model.service_name, model.name, params))

    def container_overrides(self, backend, job_def_id: str, job_queue: str, overrides) -> dict:
        """The job's command behind SHIM, and in its env what SHIM needs and credentials.

        On AWS the job role gives the task its credentials (the container credentials
        endpoint); moto has no such endpoint, so fake keys go into the test job's env.
        """
        definition = backend.get_job_definition(job_def_id)
        queue = backend.get_job_queue(job_queue)
        overrides = dict(overrides or {})
        command = overrides.get("command") or definition.container_properties["command"]
        overrides["command"] = ["python3", "-c", SHIM, *command]
        needs = {r["type"]: r["value"]
                 for r in definition.container_properties.get("resourceRequirements", ())}
        capacity = sum(float(env.compute_resources.get("maxvCpus", 0))
                       for env in queue.environments)
        extra = {**FAKE_CREDENTIALS, "SPMD_TEST_SCHEDULER": self.scheduler.url,
                 "SPMD_TEST_POOL": queue.name, "SPMD_TEST_CAPACITY": str(capacity),
                 "SPMD_TEST_RETRY_STRATEGY": json.dumps(definition.retry_strategy or {}),
                 "SPMD_TEST_LIMITS": f"{needs.get('VCPU', 1)},{needs.get('MEMORY', 2048)}",
                 # names and ARNs only: SHIM reads the values as ECS's agent would
                 "SPMD_TEST_SECRETS": json.dumps(definition.container_properties.get("secrets")
                                                 or []),
                 "SPMD_TEST_ENDPOINT": self.boto("secretsmanager").meta.endpoint_url}
        overrides["environment"] = list(overrides.get("environment") or ()) + [
            {"name": k, "value": v} for k, v in extra.items()]
        return overrides

    # -- what moto answers ------------------------------------------------------------------

    def exit_codes(self, parsed, **_):
        """AWS's DescribeJobs has container.exitCode of an ended job; moto's only ListJobs has it."""
        for job in parsed.get("jobs", ()):
            container = job.setdefault("container", {})
            moto_job = _moto_job(job["jobId"])
            if job.get("status") in ("SUCCEEDED", "FAILED") and "exitCode" not in container \
                    and moto_job is not None and moto_job.exit_code is not None:
                container["exitCode"] = moto_job.exit_code

    def scheduled(self, parsed, **_):
        """A job AWS would hold back for capacity is RUNNABLE; each job has one entry in
        ``attempts`` per attempt SHIM ran (moto's has one at most)."""
        for job in parsed.get("jobs", parsed.get("jobSummaryList", ())):
            job_id = job["jobId"]
            if job.get("status") == "RUNNING" and self.scheduler.waiting(job_id):
                job["status"] = "RUNNABLE"
            if "attempts" in job:
                template = (job["attempts"] or [{}])[0]
                count = self.scheduler.attempts.get(job_id, 0)
                if job.get("status") == "RUNNING":
                    count = max(0, count - 1)  # AWS lists attempts once they ended
                job["attempts"] = [copy.deepcopy(template) for _ in range(count)]

    def log_configuration(self, parsed, **_):
        """AWS's DescribeJobs gives a job's container the logConfiguration of its job
        definition ("ContainerDetail", AWS Batch API Reference); moto's leaves it out."""
        for job in parsed.get("jobs", ()):
            moto_job = _moto_job(job["jobId"])
            group = moto_job is not None and _awslogs_group(moto_job.job_definition)
            if group:
                job.setdefault("container", {})["logConfiguration"] = {
                    "logDriver": "awslogs", "options": {"awslogs-group": group}}

    def queue_actions(self, params, **_):
        """What spmd_aws sets as a queue's jobStateTimeLimitActions (moto drops them)."""
        if "jobStateTimeLimitActions" in params:
            name = params.get("jobQueueName") or params.get("jobQueue", "").rsplit("/", 1)[-1]
            self.time_limit_actions[name] = copy.deepcopy(params["jobStateTimeLimitActions"])

    def described_queues(self, parsed, **_):
        """AWS's DescribeJobQueues returns the queue's jobStateTimeLimitActions; moto's does not."""
        for queue in parsed.get("jobQueues", ()):
            if queue.get("jobQueueName") in self.time_limit_actions:
                queue["jobStateTimeLimitActions"] = copy.deepcopy(
                    self.time_limit_actions[queue["jobQueueName"]])

    def watch_containers(self, engine) -> None:
        """AWS (ECS) starts a job's container with its vCPU and memory limits; moto starts it
        without any. Apply them as the container starts, and remember the containers the
        kernel kills for memory, which AWS reports as OutOfMemoryError."""
        self._events = engine.events(decode=True, filters={"type": "container",
                                                           "event": ["start", "oom"]})

        def run():
            from docker.errors import APIError
            for event in self._events:
                name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
                if event.get("Action") == "oom":
                    self.out_of_memory.add(name)
                    continue
                try:
                    container = engine.containers.get(event["id"])
                    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"] or ())
                    if "SPMD_TEST_LIMITS" in env:
                        vcpus, memory = env["SPMD_TEST_LIMITS"].split(",")
                        container.update(mem_limit=f"{memory}m", memswap_limit=f"{memory}m",
                                         cpu_period=100_000, cpu_quota=int(float(vcpus) * 100_000))
                except APIError:
                    pass  # already gone, or more CPUs than this machine has
        threading.Thread(target=run, daemon=True, name="spmd-test-limits").start()

    def oom_reason(self, parsed, **_):
        """AWS gives a job killed for memory the reason OutOfMemoryError; moto gives none."""
        for job in parsed.get("jobs", parsed.get("jobSummaryList", ())):
            container_name = f"{job.get('jobName')}-{job['jobId'].replace(':', '-')}"
            if job.get("status") == "FAILED" and container_name in self.out_of_memory:
                job.setdefault("container", {})["reason"] = \
                    "OutOfMemoryError: Container killed due to memory usage"
                job.setdefault("statusReason", "Essential container in task exited")
