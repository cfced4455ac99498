"""EcrRegistry on moto's ECR, and a real push to the stand-in registry."""
import io
import json
import tarfile
import urllib.request

import pytest

from spmd_aws.aws import Clients
from spmd_aws.registry import EcrRegistry, ensure_repository
from spmd_aws.stack import Stack

from awsharness import REGION


@pytest.fixture
def ecr_registry(aws_config):
    clients = Clients(REGION, aws_config["endpoint_url"])
    return EcrRegistry(clients, Stack(aws_config["stack"]))


def test_repository_is_created_once_tagged_and_scanned_on_push(ecr_registry, boto, calls):
    stack = ecr_registry.stack
    assert ecr_registry.reference("abc") == \
        f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{stack.repository}:abc"
    assert ensure_repository(ecr_registry.clients, stack)[1] == "found"
    assert calls.count("ecr", "CreateRepository") == 1
    ecr = boto("ecr")
    repo = ecr.describe_repositories(repositoryNames=[stack.repository])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert tags == [{"Key": "spmd:stack", "Value": stack.name}]


def test_exists_asks_ecr_for_the_tag(ecr_registry, boto):
    assert not ecr_registry.exists("abc")  # no repository yet
    ecr_registry.reference("abc")  # makes the repository
    assert not ecr_registry.exists("abc")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                           "digest": "sha256:" + "0" * 64}, "layers": []}
    boto("ecr").put_image(repositoryName=ecr_registry.stack.repository, imageTag="abc",
                          imageManifest=json.dumps(manifest))
    assert ecr_registry.exists("abc") and not ecr_registry.exists("abd")


def test_credentials_come_from_the_authorization_token(ecr_registry):
    creds = ecr_registry.credentials()
    assert creds["username"] == "AWS" and creds["password"]


def _tiny_image(engine, name: str) -> None:
    """A one-file image, so the push is quick."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    repository, _, tag = name.partition(":")
    engine.api.import_image_from_data(data.getvalue(), repository=repository, tag=tag)


@pytest.mark.docker
def test_publish_pushes_to_the_configured_address_and_untags_it_here(aws_config, registry, engine):
    clients = Clients(REGION, aws_config["endpoint_url"])
    ecr_registry = EcrRegistry(clients, Stack(aws_config["stack"]), address=registry)
    _tiny_image(engine, "spmd-test-publish:v1")
    try:
        reference = ecr_registry.publish("spmd-test-publish:v1", "v1")
    finally:
        engine.images.remove("spmd-test-publish:v1", noprune=True)
    assert reference == f"{registry}/{aws_config['stack']}-tasks:v1"
    with urllib.request.urlopen(f"http://{registry}/v2/{aws_config['stack']}-tasks/tags/list") as r:
        assert json.loads(r.read())["tags"] == ["v1"]
    assert reference not in [t for image in engine.images.list() for t in image.tags]


def test_only_the_endpoint_getauthorizationtoken_names_is_ecr():
    from spmd_aws.registry import is_ecr
    # "GetAuthorizationToken" (Amazon ECR API Reference): proxyEndpoint is
    # https://<account>.dkr.ecr.<region>.amazonaws.com
    proxy = "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert is_ecr("123456789012.dkr.ecr.us-east-1.amazonaws.com", proxy)
    assert is_ecr("123456789012.dkr.ecr.us-east-1.amazonaws.com/lab", proxy)
    assert is_ecr("vpce-0a1b-abcd.dkr.ecr.us-east-1.vpce.amazonaws.com", proxy)
    # a substring test took these for ECR and would have sent them the account's token
    assert not is_ecr("123456789012.dkr.ecr.attacker.example", proxy)
    assert not is_ecr("123456789012.dkr.ecr.us-east-1.amazonaws.com.attacker.example", proxy)
    assert not is_ecr("vpce-1.dkr.ecr.us-east-1.vpce.amazonaws.com.attacker.example", proxy)
    assert not is_ecr("999999999999.dkr.ecr.us-east-1.amazonaws.com", proxy)  # another account
    assert not is_ecr("vpce-0a1b.dkr.ecr.eu-west-1.vpce.amazonaws.com", proxy)  # another region
    assert not is_ecr("127.0.0.1:5000", proxy) and not is_ecr("ghcr.io/lab", proxy)


def test_a_lookalike_of_ecr_never_gets_the_ecr_token(aws_config, calls):
    clients = Clients(REGION, aws_config["endpoint_url"])
    stack = Stack(aws_config["stack"])
    fake = EcrRegistry(clients, stack, address="123456789012.dkr.ecr.attacker.example")
    assert fake.credentials() is None and not fake.ecr
    assert calls.count("ecr", "CreateRepository") == 0
    # the account's own endpoint (moto's proxyEndpoint) is ECR and gets the token
    proxy = clients("ecr").get_authorization_token()["authorizationData"][0]["proxyEndpoint"]
    own = EcrRegistry(clients, stack, address=proxy.removeprefix("https://"))
    assert own.ecr and own.credentials()["username"] == "AWS"


@pytest.mark.docker
def test_another_registry_is_asked_itself_and_never_gets_the_ecr_token(aws_config, registry,
                                                                        engine, calls):
    clients = Clients(REGION, aws_config["endpoint_url"])
    other = EcrRegistry(clients, Stack(aws_config["stack"]), address=registry)
    assert other.credentials() is None  # the engine's own login for that registry
    assert not other.exists("v1")
    _tiny_image(engine, "spmd-test-other:v1")
    try:
        other.publish("spmd-test-other:v1", "v1")
    finally:
        engine.images.remove("spmd-test-other:v1", noprune=True)
    # pushed there, so found there: the next map builds and pushes nothing
    assert other.exists("v1") and not other.exists("v2")
    assert [(s, op) for s, op, _ in calls.calls if s == "ecr"] == []


# -- one image for every backend, built for the platform the tasks run on ------------------

@pytest.mark.docker
def test_local_and_aws_compute_the_same_image_for_the_same_knot(aws_config, base_image):
    import spmd
    from spmd.images import build as image
    local = spmd.Knot(len, backend="local", base_image=base_image, requirements=["six"])
    aws = spmd.Knot(len, backend="aws", base_image=base_image, requirements=["six"],
                    config=aws_config)
    assert local.image_spec().runtime_packages == aws.image_spec().runtime_packages
    assert local.image_spec().runtime_requirements == aws.image_spec().runtime_requirements
    _, local_spec, local_tag = image.identify(local.image_spec())
    _, aws_spec, aws_tag = image.identify(aws.image_spec())
    assert local_spec.platform == aws_spec.platform == "linux/amd64"  # this engine's CPU
    assert local_tag == aws_tag
    other = spmd.Knot(len, backend="aws", base_image=base_image, requirements=["six==1.16.0"],
                      config=aws_config)
    assert image.identify(other.image_spec())[2] != aws_tag


@pytest.mark.docker
def test_an_arm64_build_this_engine_cannot_do_is_refused_before_anything_is_sent(
        aws_config, base_image, calls):
    import spmd
    from spmd.errors import PlatformError
    knot = spmd.Knot(len, backend="aws", base_image=base_image,
                     config={**aws_config, "architecture": "arm64"})
    assert knot.image_spec().platform == "linux/arm64"
    with pytest.raises(PlatformError) as info:
        knot.map([1, 2])
    # this engine is amd64 with no qemu registered: the message says what to do
    assert "binfmt" in str(info.value) and "architecture" in str(info.value)
    assert info.value.platform == "linux/arm64"
    assert [op for _, op, _ in calls.calls if op in ("SubmitJob", "PutObject")] == []


@pytest.mark.docker
def test_with_emulation_registered_the_base_image_must_match_the_platform(base_image, tmp_path):
    from spmd.images import platforms
    from spmd.errors import PlatformError
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    assert platforms.can_emulate("linux/arm64", tmp_path)
    with pytest.raises(PlatformError, match="base image .* is linux/amd64, but tasks run on "
                                            "linux/arm64"):
        platforms.check(base_image, "arm64", tmp_path)
    platforms.check(base_image, "x86_64", tmp_path)  # the engine's own: nothing to check
    with pytest.raises(PlatformError, match="unknown platform"):
        platforms.normalize("linux/sparc")
