"""The replay layer's shared fixture."""
import pytest

from spmd_aws.aws import Clients

from .canned import REGION


@pytest.fixture
def clients(aws_env, monkeypatch):
    """Clients of a session of their own: the moto harness's botocore hooks are not on it."""
    import spmd_aws.aws
    monkeypatch.setattr(spmd_aws.aws, "_sessions", {})
    return Clients(REGION)
