"""Fixtures of the AWS backend's tests: everything local, no AWS account.

* moto's server (``ThreadedMotoServer``) plays S3, ECR, Batch, IAM, EC2, STS and CloudWatch
  Logs. It listens on the Docker bridge's gateway address, which both this process and
  the task containers reach, so the endpoint URL is the same on both sides.
* A real registry (Debian's ``docker-registry``) on 127.0.0.1 stands in for ECR's
  endpoint: pushes and pulls are real (``registry`` in the config is its address).
* moto's Batch runs each job in a real container on the local Docker engine.

Where moto differs from AWS, the harness (``awsharness.py``, installed by the ``harness``
fixture) bridges the gap, only in the tests and never in spmd_aws; each bridge says which
AWS behaviour it stands in for.
"""
from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from awsharness import FAKE_CREDENTIALS, REGION, Harness


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bridge_address() -> str:
    """The Docker bridge's gateway: this host as containers on the default network see it."""
    from spmd.testing.buckets import bridge_address
    return bridge_address()


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
    import moto.settings
    host = _bridge_address()
    # moto tells containers where it runs (MOTO_HOST); left alone it probes for a Docker socket
    patch = pytest.MonkeyPatch()
    patch.setattr(moto.settings, "moto_server_host", lambda: f"http://{host}")
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    patch.undo()


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
    from spmd.images import base as baseimage
    from spmd.errors import BaseImageError
    try:
        return baseimage.resolve(None)
    except BaseImageError:
        return baseimage.bootstrap()


@pytest.fixture(scope="session")
def harness(boto, registry, moto_endpoint):
    """The bridges from moto to AWS (awsharness.py), installed for the whole session."""
    import spmd_aws.aws
    host = urllib.parse.urlsplit(moto_endpoint).hostname
    bridge = Harness(boto, registry, host)
    try:
        from spmd import docker_engine
        engine = docker_engine.client()
    except Exception:
        engine = None  # no engine: only the tests without containers can run
    patch = pytest.MonkeyPatch()
    bridge.install(spmd_aws.aws.session().events, patch, engine)
    yield bridge
    patch.undo()
    bridge.uninstall()


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
