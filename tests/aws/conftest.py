"""Fixtures of the AWS backend's tests: everything local, no AWS account.

* moto's server (``ThreadedMotoServer``) plays S3, ECR, Batch, IAM, EC2, STS and CloudWatch
  Logs. It listens on the Docker bridge's gateway address, which both this process and
  the task containers reach, so the endpoint URL is the same on both sides.
* A real registry (Debian's ``docker-registry``) on 127.0.0.1 stands in for ECR's
  endpoint: pushes and pulls are real (``registry`` in the config is its address).
* moto's Batch runs each job in a real container on the local Docker engine.

Where moto differs from AWS, the harness below bridges the gap (and only here, never in
spmd_aws); each bridge says which AWS behaviour it stands in for.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

REGION = "us-east-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bridge_address() -> str:
    """The Docker bridge's gateway: this host as containers on the default network see it."""
    try:
        from spmd import docker_engine
        network = docker_engine.client().networks.get("bridge").attrs
    except Exception:
        return "127.0.0.1"  # no engine: only the tests without containers can run
    for config in network.get("IPAM", {}).get("Config") or ():
        if config.get("Gateway"):
            return config["Gateway"]
        if config.get("Subnet"):
            import ipaddress
            return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    return "127.0.0.1"


@pytest.fixture(scope="session")
def aws_env():
    """Fake credentials and the region for every boto3 client of this process.

    Makes moto behave like AWS: AWS managed policies exist (moto loads them only when asked).
    """
    patch = pytest.MonkeyPatch()
    for name, value in FAKE_CREDENTIALS.items():
        patch.setenv(name, value)
    patch.setenv("AWS_DEFAULT_REGION", REGION)
    patch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        patch.delenv(name, raising=False)
    import spmd_aws.aws
    patch.setattr(spmd_aws.aws, "_sessions", {})
    yield
    patch.undo()


@pytest.fixture(scope="session")
def moto_endpoint(aws_env):
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address=_bridge_address(), port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def moto_config(endpoint: str, **config) -> dict:
    """Change moto's own configuration (e.g. ``batch={"use_docker": False}``)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=json.dumps(config).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


@pytest.fixture(scope="session")
def boto(moto_endpoint):
    """A plain boto3 client factory for moto, for the tests' own checks (not spmd_aws's session)."""
    import boto3
    session = boto3.session.Session()

    def client(service: str):
        return session.client(service, region_name=REGION, endpoint_url=moto_endpoint)
    return client


@pytest.fixture
def aws_config(moto_endpoint):
    """Settings of a fresh stack and bucket, for tests that make their own resources."""
    name = f"t{uuid.uuid4().hex[:8]}"
    return {"backend": "aws", "region": REGION, "endpoint_url": moto_endpoint,
            "bucket": f"{name}-data", "stack": name}


def settings_of(config: dict):
    from spmd.config import resolve
    return resolve(config)


# -- the real registry standing in for ECR's endpoint ---------------------------------

@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """``docker-registry serve`` on 127.0.0.1:<free port>; yields its address."""
    binary = shutil.which("docker-registry")
    assert binary, "Debian's docker-registry package is needed (apt-get install docker-registry)"
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n")
    process = subprocess.Popen([binary, "serve", str(root / "config.yml")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("docker-registry did not start")
            time.sleep(0.2)
    yield address
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def base_image():
    from spmd import baseimage
    from spmd.errors import BaseImageError
    try:
        return baseimage.resolve(None)
    except BaseImageError:
        return baseimage.bootstrap()


# -- bridges from moto to AWS ------------------------------------------------------------

# Runs in the task container in front of the job's command (python3 -m spmd_aws.task ...).
SHIM = r"""
import json, os, subprocess, sys
# AWS sets AWS_BATCH_JOB_ARRAY_INDEX in an array's child; moto 5.2.5 only sets
# AWS_BATCH_JOB_ID=<parent>:<index>.
job = os.environ.get("AWS_BATCH_JOB_ID", "")
if ":" in job and "AWS_BATCH_JOB_ARRAY_INDEX" not in os.environ:
    os.environ["AWS_BATCH_JOB_ARRAY_INDEX"] = job.rsplit(":", 1)[1]
# AWS runs a failed job again, up to retryStrategy.attempts times, unless an evaluateOnExit
# rule says EXIT, and numbers the attempts in AWS_BATCH_JOB_ATTEMPT; moto runs it once.
strategy = json.loads(os.environ.pop("SPMD_TEST_RETRY_STRATEGY", "{}"))
final = {rule["onExitCode"] for rule in strategy.get("evaluateOnExit", ())
         if rule.get("action", "").upper() == "EXIT"}
for attempt in range(1, strategy.get("attempts", 1) + 1):
    os.environ["AWS_BATCH_JOB_ATTEMPT"] = str(attempt)
    code = subprocess.call(sys.argv[1:])
    code = 128 - code if code < 0 else code
    if code == 0 or str(code) in final:
        break
    print(f"(test harness: attempt {attempt} exited with {code})", flush=True)
sys.exit(code)
"""


class Harness:
    """The moto-to-AWS bridges, and a record of the API calls spmd_aws makes."""

    def __init__(self, boto, registry: str):
        self.boto = boto
        self.registry = registry
        self.calls: list[tuple[str, str, dict]] = []
        self.pushes: list[str] = []
        self.out_of_memory: set[str] = set()  # names of containers the kernel killed
        self._events = None

    def count(self, service: str, operation: str) -> int:
        return sum(1 for s, o, _ in self.calls if (s, o) == (service, operation))

    def record(self, params, model, **_):
        """Every request as spmd_aws made it (before the bridges below change it)."""
        self.calls.append((model.service_model.service_name, model.name, copy.deepcopy(params)))

    def submit_job(self, params, **_):
        """Wrap the job's command in SHIM, and give the container credentials for moto.

        On AWS the job role gives the task its credentials (the container credentials
        endpoint); moto has no such endpoint, so fake keys go into the test job's env.
        """
        definition = self.boto("batch").describe_job_definitions(
            jobDefinitions=[params["jobDefinition"]])["jobDefinitions"][0]
        overrides = params.setdefault("containerOverrides", {})
        overrides["command"] = ["python3", "-c", SHIM, *definition["containerProperties"]["command"]]
        env = overrides.setdefault("environment", [])
        env += [{"name": k, "value": v} for k, v in FAKE_CREDENTIALS.items()]
        env.append({"name": "SPMD_TEST_RETRY_STRATEGY",
                    "value": json.dumps(definition.get("retryStrategy") or {})})
        needs = {r["type"]: r["value"] for r in definition["containerProperties"]["resourceRequirements"]}
        env.append({"name": "SPMD_TEST_LIMITS", "value": f"{needs['VCPU']},{needs['MEMORY']}"})

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
                    pass  # already gone
        threading.Thread(target=run, daemon=True, name="spmd-test-limits").start()

    def stop(self) -> None:
        if self._events is not None:
            self._events.close()

    def oom_reason(self, parsed, **_):
        """AWS gives a job killed for memory the reason OutOfMemoryError; moto gives none."""
        for job in parsed.get("jobs", parsed.get("jobSummaryList", ())):
            container_name = f"{job.get('jobName')}-{job['jobId'].replace(':', '-')}"
            if job.get("status") == "FAILED" and container_name in self.out_of_memory:
                job.setdefault("container", {})["reason"] = \
                    "OutOfMemoryError: Container killed due to memory usage"
                job.setdefault("statusReason", "Essential container in task exited")

    def describe_jobs(self, parsed, **_):
        """AWS's DescribeJobs has container.exitCode of an ended job; moto's only ListJobs has it."""
        for job in parsed.get("jobs", ()):
            container = job.setdefault("container", {})
            if job.get("status") not in ("SUCCEEDED", "FAILED") or "exitCode" in container:
                continue
            parent, _, index = job["jobId"].partition(":")
            request = {"arrayJobId": parent} if index else {"jobQueue": job["jobQueue"]}
            listing = self.boto("batch").list_jobs(jobStatus=job["status"], **request)
            for summary in listing["jobSummaryList"]:
                if summary["jobId"] == job["jobId"] and "exitCode" in summary.get("container", {}):
                    container["exitCode"] = summary["container"]["exitCode"]

    def registered(self, registry, tag: str) -> None:
        """After a docker push to ECR, AWS's ECR lists the image; moto's ECR never sees the
        push (it went to the stand-in registry), so the pushed manifest is put there."""
        accept = "application/vnd.docker.distribution.manifest.v2+json"
        request = urllib.request.Request(
            f"http://{self.registry}/v2/{registry.stack.repository}/manifests/{tag}",
            headers={"Accept": accept})
        with urllib.request.urlopen(request) as response:
            manifest = response.read().decode()
            media_type = response.headers.get("Content-Type", accept)
        self.boto("ecr").put_image(repositoryName=registry.stack.repository, imageTag=tag,
                                   imageManifest=manifest, imageManifestMediaType=media_type)


@pytest.fixture(scope="session")
def harness(boto, registry):
    import spmd_aws.aws
    from spmd_aws.registry import EcrRegistry
    bridge = Harness(boto, registry)
    events = spmd_aws.aws.session().events
    events.register("provide-client-params", bridge.record, unique_id="spmd-test-record")
    events.register("before-parameter-build.batch.SubmitJob", bridge.submit_job,
                    unique_id="spmd-test-submit")
    events.register("after-call.batch.DescribeJobs", bridge.describe_jobs,
                    unique_id="spmd-test-describe")
    for operation in ("DescribeJobs", "ListJobs"):
        events.register(f"after-call.batch.{operation}", bridge.oom_reason,
                        unique_id=f"spmd-test-oom-{operation}")
    try:
        from spmd import docker_engine
        bridge.watch_containers(docker_engine.client())
    except Exception:
        pass  # no engine: only the tests without containers can run
    original = EcrRegistry.publish

    def publish(self, local_image, tag):
        reference = original(self, local_image, tag)
        bridge.pushes.append(reference)
        bridge.registered(self, tag)
        return reference
    patch = pytest.MonkeyPatch()
    patch.setattr(EcrRegistry, "publish", publish)
    yield bridge
    patch.undo()
    bridge.stop()
    events.unregister("provide-client-params", unique_id="spmd-test-record")
    for operation in ("DescribeJobs", "ListJobs"):
        events.unregister(f"after-call.batch.{operation}", unique_id=f"spmd-test-oom-{operation}")
    events.unregister("before-parameter-build.batch.SubmitJob", unique_id="spmd-test-submit")
    events.unregister("after-call.batch.DescribeJobs", unique_id="spmd-test-describe")


@pytest.fixture(scope="session")
def e2e_config(moto_endpoint, registry, harness):
    """Config of the end-to-end stack: moto, the real registry, Docker running the tasks."""
    return {"region": REGION, "endpoint_url": moto_endpoint, "bucket": "spmd-e2e-data",
            "stack": "spmd-e2e", "registry": registry, "poll_interval": 0.5, "max_vcpus": 4}


@pytest.fixture(scope="session")
def aws_knot(e2e_config, base_image):
    """Makes Knots on the end-to-end stack: ``aws_knot(func, retries=1, ...)``."""
    import spmd

    def make(func, **options):
        return spmd.Knot(func, backend="aws", base_image=base_image, config=e2e_config, **options)
    return make


@pytest.fixture
def calls(harness):
    """The API calls spmd_aws makes during this test: (service, operation, params)."""
    harness.calls.clear()
    return harness
