"""Data where it lives: the bytes that pass through the client and the bytes each backend
moves, for the DIPY example over N simulated subjects in a bucket (moto's S3 server).

    .venv/bin/python benchmarks/data_where_it_lives.py [--subjects 8] [--backends local,aws]

One moto server, started here, plays S3 (and, for AWS, Batch, ECR, IAM, ...) behind a WSGI
layer that records every request: time, caller's address, bucket, bytes received and sent.
Per backend, two runs of ``dipy_pipeline.derive_subject`` with ``reuse=True`` and
``outputs_to`` a second bucket; between them one object (sub-03's image, a "re-scan") changes.

- through the client: ``job.uploads`` (uploaded_bytes, staged_bytes) and the requests to the
  data and derivatives buckets made from the listing until ``map()`` returns (the client's
  only S3 traffic: it polls the job's store, not these buckets).
- moved by the backend: the requests to those buckets after ``map()`` returned until the last
  result (local: the job's scheduler fetching into the store's cache and publishing; AWS: the
  tasks in their containers), and on local the growth of the store's ``data/urls/`` cache.

AWS runs on the same stack as tests/aws (moto's Batch running tasks in Docker, Debian's
docker-registry for ECR, the harness's bridges); without docker-registry it is skipped, saying so.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests" / "aws"))  # awsharness: the bridges from moto to AWS

import dipy_pipeline  # noqa: E402
from neuro import pipeline, simulate  # noqa: E402

import spmd  # noqa: E402
from spmd.testing.buckets import Bucket, bridge_address  # noqa: E402

REGION = "us-east-1"
CHANGED = 2  # the subject (index) whose image changes between the runs: sub-03


@dataclass
class Request:
    """One request the S3 server answered."""

    at: float
    address: str
    method: str
    bucket: str
    key: str
    query: str
    received: int  # request body bytes (an upload)
    sent: int  # response body bytes (a download, a listing)


@dataclass
class Recorder:
    """WSGI middleware around moto's app: every request it serves, with its bytes."""

    app: object
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ, start_response):
        counted = _CountingInput(environ.get("wsgi.input"))
        environ["wsgi.input"] = counted
        path = urllib.parse.unquote(environ.get("PATH_INFO", ""))
        bucket, _, key = path.lstrip("/").partition("/")
        request = Request(time.monotonic(), environ.get("REMOTE_ADDR", ""), environ["REQUEST_METHOD"],
                          bucket, key, environ.get("QUERY_STRING", ""), 0, 0)
        body = self.app(environ, start_response)
        try:
            for chunk in body:
                request.sent += len(chunk)
                yield chunk
        finally:
            if hasattr(body, "close"):
                body.close()
            request.received = counted.count
            with self.lock:
                self.requests.append(request)

    def between(self, start: float, end: float, buckets: set[str]) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if start <= r.at < end and r.bucket in buckets]


class _CountingInput:
    def __init__(self, stream):
        self.stream, self.count = stream, 0

    def read(self, *args):
        data = self.stream.read(*args) if self.stream else b""
        self.count += len(data)
        return data

    def readline(self, *args):
        data = self.stream.readline(*args) if self.stream else b""
        self.count += len(data)
        return data

    def __iter__(self):
        return iter(self.readline, b"")


def start_server() -> tuple[str, Recorder]:
    """moto's server on the Docker bridge's address (tasks reach it), recording requests."""
    import logging

    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    recorder = Recorder(DomainDispatcherApplication(create_backend_app))
    server = make_server(bridge_address(), 0, recorder, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://{server.host}:{server.port}", recorder


def make_bucket(endpoint: str, prefix: str, writable: bool) -> Bucket:
    bucket = Bucket(f"{prefix}-{uuid.uuid4().hex[:8]}", endpoint)
    bucket.client().create_bucket(Bucket=bucket.name,
                                  ACL="public-read-write" if writable else "public-read")
    return bucket


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def payload_bytes(job: spmd.Job) -> int:
    """Bytes of the job's own objects that map() put in its store (manifest, function, input
    shards, data.json): spmd's payloads, the same whatever the data's size."""
    from spmd import layout
    store = job.backend.store
    keys = [layout.manifest_key(job.id), layout.function_key(job.id), layout.data_key(job.id),
            *store.list(layout.prefix(job.id) + "input/")]
    return sum(len(store.get(key)) for key in keys)


def kinds(requests: list[Request]) -> str:
    """Requests by kind: LIST, HEAD, GET (object), PUT, DELETE."""
    def kind(r: Request) -> str:
        if r.method == "GET" and (not r.key or "list-type" in r.query or r.key.endswith("/")):
            return "LIST"
        return r.method
    counts = Counter(kind(r) for r in requests)
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"


def megabytes(n: int) -> str:
    return f"{n:,} bytes ({n / 1e6:.1f} MB)"


def run(label: str, knot: spmd.Knot, data: Bucket, out: Bucket, recorder: Recorder,
        cache: Path | None) -> None:
    """The two runs on one backend, printed."""
    knot.ensure_image()  # a build is not data: outside the measurements
    url, options = data.url("ds-sim/"), {"anon": True, "endpoint_url": data.endpoint}
    buckets = {data.name, out.name}
    images = []
    for run_name in ("first run", "second run, reuse=True, after sub-03's image changed"):
        if run_name.startswith("second"):
            rescan = simulate.subject_objects(CHANGED, seed=simulate.SEED + 1)
            key = f"sub-{CHANGED + 1:02d}/dwi/sub-{CHANGED + 1:02d}_dwi.nii.gz"
            data.put("ds-sim/" + key, rescan[key])
        cached_before = tree_bytes(cache) if cache else 0
        start = time.monotonic()
        names = dipy_pipeline.list_subjects(url, options)
        items = [spmd.Args(spmd.File(dipy_pipeline.subject_location(url, n), **options), subject=n)
                 for n in names]
        job = knot.map(items, outputs_to=out.url("dti/{subject}/"),
                       outputs_options={"anon": True, "endpoint_url": data.endpoint}, reuse=True)
        mapped = time.monotonic()
        results = job.results(timeout=1800)
        done = time.monotonic()
        time.sleep(0.5)  # a request still being answered when the last result arrived
        assert [r["subject"] for r in results] == names, results
        images.append(job.manifest.image)
        if len(set(images)) > 1:
            print(f"  NOTE: the task image changed between the runs ({images[0]} -> {images[-1]}; "
                  "spmd's sources were edited meanwhile), so no earlier result could be reused")
        ran = job.manifest.items if job.manifest.items is not None else list(range(len(names)))
        client = recorder.between(start, mapped, buckets)
        backend = recorder.between(mapped, time.monotonic(), buckets)
        sent = job.uploads
        payloads = payload_bytes(job)
        fetched = [r for r in backend if r.bucket == data.name]
        published = [r for r in backend if r.bucket == out.name]
        print(f"{label}, {run_name}: {len(names)} subjects, {len(ran)} ran "
              f"({', '.join(names[i] for i in ran) or 'none'}); map() {mapped - start:.1f} s, "
              f"results {done - start:.1f} s")
        print(f"  through the client: {sent.uploaded_bytes} bytes uploaded, {sent.staged_bytes} "
              f"staged; {len(client)} requests to the buckets ({kinds(client)}): "
              f"{sum(r.received for r in client):,} bytes sent, {sum(r.sent for r in client):,} "
              f"bytes received (keys and metadata); {sent.remote_references} URLs referenced, "
              f"{megabytes(sent.remote_bytes)} read where they live; the job's own payloads in "
              f"its store (manifest, function, items): {payloads:,} bytes")
        who = sorted({r.address for r in backend})
        print(f"  moved by the backend (from {', '.join(who) or 'nobody'}): read "
              f"{megabytes(sum(r.sent for r in fetched))} in {len(fetched)} requests "
              f"({kinds(fetched)}); published {megabytes(sum(r.received for r in published))} in "
              f"{len(published)} requests ({kinds(published)})"
              + (f"; the store's data/urls cache grew by {megabytes(tree_bytes(cache) - cached_before)}"
                 if cache else ""))


def local(args, endpoint: str, recorder: Recorder, data: Bucket, out: Bucket, scratch: Path) -> None:
    store = scratch / "local-store"
    knot = dipy_pipeline.knot("local", config={"store_dir": str(store)}, func=pipeline.derive_subject)
    run("local", knot, data, out, recorder, store / "spmd" / "data" / "urls")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def aws(args, endpoint: str, recorder: Recorder, data: Bucket, out: Bucket, scratch: Path) -> None:
    """The AWS backend on moto, set up as tests/aws/conftest.py sets it up."""
    binary = shutil.which("docker-registry")
    if binary is None:
        print("aws: skipped: Debian's docker-registry (the stand-in for ECR's endpoint) is not "
              "installed")
        return
    import pytest

    import moto.settings
    from awsharness import FAKE_CREDENTIALS, Harness
    from spmd.images import base as baseimage
    from spmd import docker_engine
    patch = pytest.MonkeyPatch()
    for name, value in FAKE_CREDENTIALS.items():
        patch.setenv(name, value)
    patch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        patch.delenv(name, raising=False)
    host = urllib.parse.urlsplit(endpoint).hostname
    patch.setattr(moto.settings, "moto_server_host", lambda: f"http://{host}")
    port = _free_port()
    (scratch / "registry.yml").write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {scratch / 'registry'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n")
    registry = subprocess.Popen([binary, "serve", str(scratch / "registry.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    harness = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.2)
        import boto3

        import spmd_aws.aws
        patch.setattr(spmd_aws.aws, "_sessions", {})
        session = boto3.session.Session()
        harness = Harness(lambda service: session.client(service, region_name=REGION,
                                                         endpoint_url=endpoint),
                          f"127.0.0.1:{port}", host)
        harness.install(spmd_aws.aws.session().events, patch, docker_engine.client())
        try:
            base = baseimage.resolve(None)
        except spmd.errors.BaseImageError:
            base = baseimage.bootstrap()
        config = {"region": REGION, "endpoint_url": endpoint, "bucket": "spmd-bench-data",
                  "stack": "spmd-bench", "registry": f"127.0.0.1:{port}", "poll_interval": 0.5,
                  "max_vcpus": 4, "base_image": base}
        made = dipy_pipeline.knot("aws", config=config)
        extra = dipy_pipeline.task_requirements(made, [data.url(), out.url()])
        knot = dipy_pipeline.knot("aws", config=config, func=pipeline.derive_subject,
                                  extra_requirements=extra)
        run("aws (moto)", knot, data, out, recorder, None)
    finally:
        if harness is not None:
            harness.uninstall()
        patch.undo()
        registry.terminate()
        registry.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--backends", default="local,aws")
    args = parser.parse_args()
    # AWS managed policies exist in moto's IAM (as on AWS), read when its backends are first made
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    endpoint, recorder = start_server()
    with tempfile.TemporaryDirectory(prefix="spmd-bench-data-") as scratch:
        for name in args.backends.split(","):
            data = make_bucket(endpoint, "spmd-openneuro", writable=False)
            out = make_bucket(endpoint, "spmd-derivatives", writable=True)
            objects = simulate.dataset_objects(args.subjects)
            for rel, body in objects.items():
                data.put("ds-sim/" + rel, body)
            print(f"{name}: {args.subjects} subjects, {megabytes(sum(map(len, objects.values())))} "
                  f"in s3://{data.name}/ds-sim/; derivatives to s3://{out.name}/dti/{{subject}}/")
            {"local": local, "aws": aws}[name](args, endpoint, recorder, data, out, Path(scratch))
    print(f"run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
