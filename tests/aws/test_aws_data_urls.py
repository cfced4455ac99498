"""Data where it lives, on AWS: the job role reads read_buckets and writes write_buckets.

What is tested here, and where:

* the refusals: an s3 input outside ``read_buckets`` (without ``anon=True``) or an
  ``outputs_to`` outside ``write_buckets`` fails at ``map()`` with the line of config to add,
  and nothing is submitted or written (``AwsBackend.check_data``, ``spmd_aws/access.py``);
* the grants: the policy documents ``up`` writes, read back from moto's IAM and evaluated
  statement by statement, and their update in place when the lists change (IAM only: the
  compute environment is not touched, so running jobs go on);
* a map on AWS (moto's Batch, real containers) whose tasks read a private bucket listed in
  ``read_buckets`` and publish to a prefix listed in ``write_buckets``, no byte of the data
  passing through the client; and an http input, which needs no entry, fetched by the task.

moto does not enforce IAM: a task here could read any bucket with any credentials, and the
harness gives containers fake keys where AWS would give them the job role's. So IAM's own
refusal (a 403 in the task) cannot happen here; the refusal side is the client's check at
``map()``, and the grant side is the policy document, checked by evaluating it.
"""
import fnmatch
import hashlib
import ipaddress
import json
import os
import threading
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

import spmd
from spmd.destinations import render
from spmd.remote import UrlRef
from spmd.testing import data_functions as fn
from spmd.testing.buckets import bridge_address
from spmd_aws import provision
from spmd_aws.backend import AwsBackend

from awsharness import settings_of

pytestmark = pytest.mark.docker


# -- helpers ---------------------------------------------------------------------------------

def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def allows(policy: dict, action: str, resource: str, prefix: str | None = None) -> bool:
    """Whether an Allow statement of policy grants action on resource (IAM's StringLike
    wildcards; an s3:prefix condition needs the request's prefix to match one of its values)."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or action not in _listed(statement["Action"]) or \
                not any(fnmatch.fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
            continue
        condition = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if condition is None or prefix is not None and \
                any(fnmatch.fnmatchcase(prefix, c) for c in _listed(condition)):
            return True
    return False


def job_role_policy(boto, stack: str) -> dict:
    document = boto("iam").get_role_policy(RoleName=f"{stack}-job", PolicyName="spmd")["PolicyDocument"]
    return json.loads(document) if isinstance(document, str) else document


def private_bucket(boto, name: str, objects: dict[str, bytes]) -> str:
    """A bucket readable only with credentials (no public ACL), holding objects."""
    name = f"{name}-{uuid.uuid4().hex[:8]}"
    s3 = boto("s3")
    s3.create_bucket(Bucket=name)
    for key, body in objects.items():
        s3.put_object(Bucket=name, Key=key, Body=body)
    return name


def keys(boto, bucket: str, prefix: str = "") -> list[str]:
    pages = boto("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


def nothing_submitted(calls, boto, config: dict) -> None:
    """No job definition, no Batch job, and no object of a job written to the store."""
    operations = [op for _, op, _ in calls.calls]
    assert "SubmitJob" not in operations and "RegisterJobDefinition" not in operations
    assert not [p for _, op, p in calls.calls
                if op in ("PutObject", "CreateMultipartUpload") and "jobs/" in p.get("Key", "")]
    assert keys(boto, config["bucket"], "jobs/") == []


def ref(url: str, **options) -> UrlRef:
    """A UrlRef as map() makes it (the check looks at the URL and options only)."""
    return UrlRef(url=url, options=tuple(sorted(options.items())), name=url.rstrip("/").rsplit("/", 1)[-1],
                  is_dir=url.endswith("/"), version="ETag=x;size=1", size=1)


# -- refusals at map() -----------------------------------------------------------------------

def test_an_input_outside_read_buckets_fails_at_map_with_the_line_for_the_profile(
        aws_config, moto_endpoint, boto, calls, tmp_path, monkeypatch):
    bids = private_bucket(boto, "lab-bids", {"sub-01/dwi/sub-01_dwi.nii.gz": b"\x1f\x8b dwi"})
    project = tmp_path / "spmd.toml"
    project.write_text(
        "[profiles.lab]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in aws_config.items())
        + 'read_buckets = ["lab-atlas"]\n')
    monkeypatch.chdir(tmp_path)
    user = tmp_path / "user-config.toml"  # a project file may set buckets in a trusted folder
    user.write_text(f'trusted_projects = ["{tmp_path}"]\n')
    monkeypatch.setenv("SPMD_USER_CONFIG", str(user))
    knot = spmd.Knot(fn.describe_file, profile="lab")
    url = f"s3://{bids}/sub-01/dwi/sub-01_dwi.nii.gz"
    calls.calls.clear()
    with pytest.raises(spmd.DataError) as info:
        knot.map([spmd.File(url, endpoint_url=moto_endpoint)])
    message = str(info.value)
    assert url in message and info.value.path == url
    # the exact line, with what the profile had, in the table and file it came from
    assert f'read_buckets = ["lab-atlas", "{bids}"]' in message
    assert f"in [profiles.lab] of {project}" in message
    assert "anon=True" in message
    nothing_submitted(calls, boto, aws_config)


def test_a_destination_outside_write_buckets_fails_at_map_before_any_probe(
        aws_config, moto_endpoint, boto, calls):
    out = private_bucket(boto, "lab-derivatives", {})
    config = {**aws_config, "write_buckets": [f"{out}/fa"]}
    knot = spmd.Knot(fn.write_label, backend="aws", config=config)
    calls.calls.clear()
    with pytest.raises(spmd.DataError) as info:
        knot.map([{"subject": "sub-01"}, {"subject": "sub-02"}],
                 outputs_to=f"s3://{out}/dti/{{subject}}/",
                 outputs_options={"endpoint_url": moto_endpoint})
    message = str(info.value)
    assert f"s3://{out}/dti/sub-01/, s3://{out}/dti/sub-02/: tasks would publish outputs here" in message
    # the template's fixed folder, beside what was there; where to put it
    assert f'write_buckets = ["{out}/dti", "{out}/fa"]' in message
    assert "in the config passed to spmd.Knot" in message
    assert keys(boto, out) == []  # refused before the client's write probe
    nothing_submitted(calls, boto, aws_config)


def test_what_the_check_lets_through_and_what_it_refuses(aws_config):
    """The rule itself, on the hook map() calls: anonymous and https inputs need nothing; a
    prefix entry covers whole key segments under it; the store's own job data is the job
    role's already; with a job_role of the user's own, no bucket is checked. A folder of this
    machine as outputs_to, or a profile= option, is refused whatever the role."""
    config = {**aws_config, "read_buckets": ["lab-bids/ds1"], "write_buckets": ["lab-out"]}
    backend = AwsBackend(settings_of(config))
    allowed = [ref("s3://openneuro.org/ds000114/sub-01/", anon=True),
               ref("https://example.org/atlas.nii.gz"),
               ref("s3://lab-bids/ds1/sub-01/dwi.nii.gz"), ref("s3://lab-bids/ds1/"),
               ref(f"s3://{aws_config['bucket']}/jobs/j-1/files/000000/fa.nii.gz")]
    backend.check_data(allowed, render("s3://lab-out/dti/{index}/", [1, 2]))
    backend.check_data([], render("s3://anyone/{index}/", [1], {"anon": True}))
    for url in ("s3://lab-bids/ds1x/sub-01.nii.gz", "s3://lab-bids/ds2/", "s3://lab-bids/",
                f"s3://{aws_config['bucket']}/data/sub-01.nii.gz"):
        with pytest.raises(spmd.DataError, match="read_buckets = ") as info:
            backend.check_data([ref(url)], None)
        assert info.value.path == url
    with pytest.raises(spmd.DataError, match=r'write_buckets = \["lab-out", "other"\]'):
        backend.check_data([], render("s3://other/{index}/", [1]))
    with pytest.raises(spmd.DataError, match="a folder on this machine, which tasks on AWS cannot"):
        backend.check_data([], render("/tmp/spmd-out/{index}/", [1]))
    with pytest.raises(spmd.DataError, match="profile= names AWS CLI credentials"):
        backend.check_data([ref("s3://lab-bids/ds1/a", profile="lab")], None)
    own_role = AwsBackend(settings_of({**config, "job_role": "lab-own-role"}))
    own_role.check_data([ref("s3://anything/at/all")], render("s3://else/{index}/", [1]))
    with pytest.raises(spmd.DataError, match="a folder on this machine"):
        own_role.check_data([], render("/tmp/spmd-out/{index}/", [1]))
    with pytest.raises(spmd.DataError, match="profile= names AWS CLI credentials"):
        own_role.check_data([ref("s3://anything/at/all", profile="lab")], None)


def test_bad_bucket_entries_are_config_errors_naming_the_key(aws_config):
    with pytest.raises(spmd.ConfigError, match="read_buckets") as info:
        settings_of({**aws_config, "read_buckets": ["Lab_Bids"]})
    assert "Lab_Bids" in str(info.value)


# -- grants: the policy up writes --------------------------------------------------------

def test_up_grants_the_job_role_exactly_the_listed_buckets(aws_config, boto):
    stack, bucket = aws_config["stack"], aws_config["bucket"]
    provision.up(settings_of({**aws_config,
                              "read_buckets": ["lab-bids", "s3://mirror/ds000114/", "lab-bids/ds1"],
                              "write_buckets": ["lab-derivatives/dti"]}))
    policy = job_role_policy(boto, stack)
    arn = "arn:aws:s3:::"
    assert policy["Statement"][2:] == [
        # lab-bids/ds1 is inside lab-bids: granted once
        {"Sid": "ReadBuckets", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [f"{arn}lab-bids/*", f"{arn}mirror/ds000114/*"]},
        {"Sid": "ListReadBucket0", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"{arn}lab-bids"},
        {"Sid": "ListReadBucket1", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"{arn}mirror",
         "Condition": {"StringLike": {"s3:prefix": ["ds000114", "ds000114/*"]}}},
        {"Sid": "WriteBuckets", "Effect": "Allow", "Action": "s3:PutObject",
         "Resource": [f"{arn}lab-derivatives/dti/*"]}]
    # evaluated: reads are reads only, writes are puts only, prefixes hold
    assert allows(policy, "s3:GetObject", f"{arn}lab-bids/sub-01/dwi.nii.gz")
    assert allows(policy, "s3:ListBucket", f"{arn}lab-bids", prefix="sub-01/")
    assert allows(policy, "s3:GetObject", f"{arn}mirror/ds000114/sub-01/anat.nii.gz")
    assert allows(policy, "s3:ListBucket", f"{arn}mirror", prefix="ds000114/sub-01/")
    assert not allows(policy, "s3:ListBucket", f"{arn}mirror", prefix="ds000115/")
    assert not allows(policy, "s3:GetObject", f"{arn}mirror/ds000115/sub-01/anat.nii.gz")
    assert not allows(policy, "s3:PutObject", f"{arn}lab-bids/sub-01/dwi.nii.gz")
    assert allows(policy, "s3:PutObject", f"{arn}lab-derivatives/dti/sub-01/fa.nii.gz")
    assert not allows(policy, "s3:PutObject", f"{arn}lab-derivatives/raw/x")
    assert not allows(policy, "s3:GetObject", f"{arn}lab-derivatives/dti/sub-01/fa.nii.gz")
    for action in ("s3:DeleteObject", "s3:PutObjectAcl", "s3:GetObject"):
        assert not allows(policy, action, f"{arn}{bucket}/other/key")
    # job data as before
    assert allows(policy, "s3:GetObject", f"{arn}{bucket}/jobs/j-1/output/000000.pkl")
    assert allows(policy, "s3:PutObject", f"{arn}{bucket}/jobs/j-1/output/000000.pkl")


def test_without_lists_the_policy_is_job_data_only(aws_config, boto):
    provision.up(settings_of(aws_config))
    policy = job_role_policy(boto, aws_config["stack"])
    assert [s["Sid"] for s in policy["Statement"]] == ["JobData", "ListJobData"]


def test_changing_the_lists_updates_the_policy_in_place_not_the_compute_environment(
        aws_config, boto, calls):
    stack = aws_config["stack"]
    batch = boto("batch")

    def environment() -> dict:
        [env] = batch.describe_compute_environments(
            computeEnvironments=[f"{stack}-ec2"])["computeEnvironments"]
        return env
    provision.up(settings_of({**aws_config, "read_buckets": ["lab-bids"]}))
    before = environment()
    calls.calls.clear()
    wider = {**aws_config, "read_buckets": ["lab-bids", "lab-atlas"], "write_buckets": ["lab-out"]}
    report = provision.up(settings_of(wider))
    assert report.names("updated") == [
        f"IAM role {stack}-job (policy: read_buckets lab-atlas, lab-bids; write_buckets lab-out)"]
    operations = [op for _, op, _ in calls.calls]
    assert operations.count("PutRolePolicy") == 1
    assert not [op for op in operations if op.startswith(("Create", "Update", "Delete"))]
    assert environment() == before  # same ARN, status, resources: running jobs go on
    policy = job_role_policy(boto, stack)
    assert allows(policy, "s3:GetObject", "arn:aws:s3:::lab-atlas/x")
    assert allows(policy, "s3:PutObject", "arn:aws:s3:::lab-out/x")

    # a map's first look (deployment) sees the change too, and brings the policy in line
    calls.calls.clear()
    narrower = {**aws_config, "read_buckets": ["lab-bids"]}
    provision.deployment(settings_of(narrower))
    operations = [op for _, op, _ in calls.calls]
    assert operations.count("PutRolePolicy") == 1 and "UpdateComputeEnvironment" not in operations
    assert not allows(job_role_policy(boto, stack), "s3:GetObject", "arn:aws:s3:::lab-atlas/x")
    assert environment() == before
    # unchanged: a look of four requests, nothing written; the order of entries is no change
    calls.calls.clear()
    provision.deployment(settings_of({**aws_config, "read_buckets": ["s3://lab-bids/"]}))
    assert [op for _, op, _ in calls.calls] == ["DescribeJobQueues", "DescribeComputeEnvironments",
                                                "GetRole", "GetRolePolicy"]


def test_the_policy_is_compared_as_a_document_not_as_text():
    """What up and a map's first look compare. IAM's GetRolePolicy gives the document
    URL-encoded ("The policy document ... is URL-encoded compliant with RFC 3986", IAM API
    Reference, GetRolePolicy); boto3 decodes it to a dict, other clients may not. A single
    action may come back as a string, and lists in another order: none of that is a change,
    or every map would put the policy again."""
    from urllib.parse import quote

    from spmd_aws.permissions import canonical, job_policy
    policy = job_policy("lab-data", "", read=("lab-bids", "lab-atlas/ds1"), write=("lab-out",))
    encoded = quote(json.dumps(policy), safe="")
    assert canonical(encoded) == canonical(policy) == canonical(json.dumps(policy))
    shuffled = json.loads(json.dumps(policy))
    shuffled["Statement"].reverse()
    shuffled["Statement"][-1]["Action"] = [shuffled["Statement"][-1]["Action"]] \
        if isinstance(shuffled["Statement"][-1]["Action"], str) else \
        list(reversed(shuffled["Statement"][-1]["Action"]))
    assert canonical(shuffled) == canonical(policy)
    assert canonical(job_policy("lab-data", "", read=("lab-bids",))) != canonical(policy)
    assert canonical("Version: '2012-10-17'") != canonical(policy)  # YAML: put ours again


# -- a map on AWS: the task reads and publishes as the job role -------------------------

def test_a_map_reads_a_private_bucket_and_publishes_with_the_job_role(
        e2e_config, base_image, moto_endpoint, boto, calls):
    """The tasks (containers of moto's Batch) fetch the private objects and put their outputs
    with the credentials the job role stands for; the client reads metadata only."""
    objects = {f"sub-0{i}/dwi/sub-0{i}_dwi.nii.gz": bytes([i]) * (30_000 + i) for i in (1, 2)}
    bids = private_bucket(boto, "lab-bids", objects)
    out = private_bucket(boto, "lab-derivatives", {})
    config = {**e2e_config, "stack": "spmd-e2e-urls", "read_buckets": [bids],
              "write_buckets": [f"{out}/dti"]}
    # the data is private: without credentials moto refuses to read it (it does check a
    # bucket's ACL on an anonymous read, though not on an anonymous write)
    import s3fs
    anonymous = s3fs.S3FileSystem(anon=True, endpoint_url=moto_endpoint, skip_instance_cache=True)
    with pytest.raises(PermissionError):
        anonymous.cat_file(f"{bids}/sub-01/dwi/sub-01_dwi.nii.gz")
    knot = spmd.Knot(fn.write_outputs, backend="aws", base_image=base_image, config=config)
    items = [spmd.Args(f"sub-0{i}", spmd.File(f"s3://{bids}/{key}", endpoint_url=moto_endpoint))
             for i, key in zip((1, 2), objects)]
    job = knot.map(items, outputs_to=f"s3://{out}/dti/{{index}}/",
                   outputs_options={"endpoint_url": moto_endpoint})
    assert job.results(timeout=300) == ["sub-01", "sub-02"]
    # up granted exactly these to the stack's job role
    policy = job_role_policy(boto, "spmd-e2e-urls")
    assert allows(policy, "s3:GetObject", f"arn:aws:s3:::{bids}/sub-01/dwi/sub-01_dwi.nii.gz")
    assert allows(policy, "s3:PutObject", f"arn:aws:s3:::{out}/dti/0/result.txt")
    # published where asked, each copy.bin the private object's bytes, fetched by the task
    assert keys(boto, out) == ["dti/0/result.txt", "dti/0/sub/copy.bin",
                               "dti/1/result.txt", "dti/1/sub/copy.bin"]
    s3 = boto("s3")
    for index, body in enumerate(objects.values()):
        assert s3.get_object(Bucket=out, Key=f"dti/{index}/sub/copy.bin")["Body"].read() == body
    assert job.output_urls(1) == {"result.txt": f"s3://{out}/dti/1/result.txt",
                                  "sub/copy.bin": f"s3://{out}/dti/1/sub/copy.bin"}
    # nothing of the data through the client: no upload, and spmd_aws put nothing of it
    assert job.uploads.uploaded_bytes == 0 and job.uploads.references == 0
    assert job.uploads.remote_bytes == sum(len(b) for b in objects.values())
    assert not [p for s, op, p in calls.calls if s == "s3" and p.get("Bucket") in (bids, out)]
    assert keys(boto, e2e_config["bucket"], f"jobs/{job.id}/files/") == []


def test_an_http_input_needs_no_listing_and_the_task_fetches_it(aws_knot, tmp_path):
    """https:// (here http://, from a server on the Docker bridge) needs no bucket entry: the
    task has the network and fetches it; the client sent a HEAD only."""
    body = os.urandom(50_000)
    (tmp_path / "atlas.nii.gz").write_bytes(body)
    seen: list[tuple[str, str]] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # who asked what, instead of stderr
            seen.append((self.client_address[0], self.command))
    server = ThreadingHTTPServer((bridge_address(), 0), partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        job = aws_knot(fn.describe_file).map([spmd.File(f"http://{host}:{port}/atlas.nii.gz")])
        assert job.results(timeout=300) == [{"type": "str", "is_file": True, "name": "atlas.nii.gz",
                                             "sha256": hashlib.sha256(body).hexdigest()}]
    finally:
        server.shutdown()
        server.server_close()
    assert job.uploads.uploaded_bytes == 0 and job.uploads.remote_bytes == len(body)
    # the client asked for metadata only; the bytes went to task containers, each at an
    # address of the Docker bridge's network other than its gateway (this machine)
    from spmd import docker_engine
    [subnet] = [c["Subnet"] for c in docker_engine.client().networks.get("bridge").attrs["IPAM"]["Config"]
                if "Subnet" in c]
    fetchers = [who for who, method in seen if method == "GET"]
    assert "HEAD" in [method for _, method in seen] and fetchers
    assert all(ipaddress.ip_address(who) in ipaddress.ip_network(subnet) and who != host
               for who in fetchers), (fetchers, subnet)
