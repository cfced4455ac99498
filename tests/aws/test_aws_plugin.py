"""The AWS plugin: registered by the same hooks as any plugin, lazy about boto3, strict about config."""
import subprocess
import sys

import pytest

from spmd import plugins
from spmd.config import resolve
from spmd.errors import ConfigError, ImageError, ObjectNotFound, StoreError
from spmd_aws.aws import AwsError, translate
from spmd_aws.backend import AwsBackend
from spmd_aws.store import S3Store


def test_backend_and_store_are_registered():
    assert "aws" in plugins.backend_names()
    assert plugins.backend_class("aws") is AwsBackend
    assert plugins.store_class("s3") is S3Store


def test_nothing_imports_boto3_until_a_client_is_made():
    code = ("import sys, spmd.plugins as p\n"
            "cls = p.backend_class('aws'); p.store_class('s3'); p.known_config_keys()\n"
            "from spmd.config import resolve\n"
            "b = cls(resolve({'backend': 'aws', 'bucket': 'b-1', 'region': 'eu-west-1'}))\n"
            "b.store, b.registry, b.queue\n"
            "print('boto3' in sys.modules, 'botocore' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_shared_keys_parse_like_the_local_backends_and_defaults_do_not_leak():
    from spmd_local.backend import LocalBackend
    local = {k.name: k for k in LocalBackend.config_keys}
    aws = {k.name: k for k in AwsBackend.config_keys}
    for name in set(local) & set(aws):
        assert aws[name].parse is local[name].parse and aws[name].default == local[name].default
    settings = resolve({"backend": "local"})
    assert settings.get("max_vcpus") is None  # the AWS default of 256 stays in the AWS backend


def test_config_values_and_capacity():
    settings = resolve({"backend": "aws", "bucket": "s3://lab-data/runs/", "spot": "yes",
                        "max_vcpus": "16", "subnets": "subnet-1, subnet-2", "stack": "lab"})
    backend = AwsBackend(settings)
    assert (backend.opts.bucket, backend.opts.prefix) == ("lab-data", "runs")
    assert backend.opts.stack.kind == "spot" and backend.opts.stack.job_queue == "lab-spot"
    assert backend.opts.subnets == ("subnet-1", "subnet-2")
    # capacity() reads the deployed compute environment (test_aws_provision.py); the config's
    assert (backend.opts.max_vcpus, backend.opts.memory) == (16, 16 * 8 * 2**30)
    assert AwsBackend(resolve({"backend": "aws", "bucket": "b-1"})).opts.max_vcpus == 256


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="bucket") as info:
        AwsBackend(resolve({"backend": "aws"}))
    assert info.value.key == "bucket"
    for key, value in (("stack", "Bad_Name"), ("bucket", "UPPER"), ("retention_days", 0),
                       ("max_vcpus", -1), ("spot", "maybe")):
        with pytest.raises(ConfigError) as info:
            resolve({"backend": "aws", "bucket": "b-1", key: value})
        assert info.value.key == key


def test_every_botocore_error_maps_to_an_spmd_error():
    from botocore.exceptions import (
        ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError,
        PartialCredentialsError, ReadTimeoutError,
    )

    def client_error(code):
        return ClientError({"Error": {"Code": code, "Message": "msg"}}, "GetObject")
    assert isinstance(translate(client_error("NoSuchKey"), StoreError, "reading", key="k"),
                      ObjectNotFound)
    assert type(translate(client_error("NoSuchKey"), AwsError, "x")) is AwsError
    denied = translate(client_error("AccessDenied"), StoreError, "writing", key="k")
    assert type(denied) is StoreError and "lacks a permission" in str(denied)
    assert type(translate(client_error("Throttling"), ImageError, "pushing")) is ImageError
    assert translate(client_error("ServerException"), AwsError, "x").code == "ServerException"
    for exc in (NoCredentialsError(), PartialCredentialsError(provider="env", cred_var="key")):
        mapped = translate(exc, StoreError, "reading")
        assert isinstance(mapped, ConfigError) and mapped.key == "aws_profile"
    assert translate(NoRegionError(), AwsError, "x").key == "region"
    unreachable = translate(EndpointConnectionError(endpoint_url="http://nowhere"), AwsError, "x")
    assert "http://nowhere" in str(unreachable)
    assert isinstance(translate(ReadTimeoutError(endpoint_url="u"), StoreError, "x"), StoreError)
    assert translate(ValueError("not botocore"), StoreError, "x") is None


def test_missing_credentials_fail_with_a_config_error(monkeypatch, tmp_path):
    import spmd_aws.aws
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(spmd_aws.aws, "_sessions", {})
    store = S3Store("b-1", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="no AWS credentials"):
        store.put("jobs/x", b"1")
