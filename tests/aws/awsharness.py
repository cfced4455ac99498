"""The moto-to-AWS bridges of the AWS tests, and helpers the test modules share.

Each bridge makes moto behave like AWS where it does not, and says which AWS behaviour it
stands in for; spmd_aws itself never knows about any of them.
"""
from __future__ import annotations

import copy
import json
import threading
import urllib.request

REGION = "us-east-1"
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
