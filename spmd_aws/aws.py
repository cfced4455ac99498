"""boto3 clients made on first use, and AWS errors mapped to spmd's at one boundary.

Nothing here runs at import: boto3 is imported when the first client is made, so the
local backend works where boto3 is not installed. Every client of a process comes from
one shared ``session()`` per AWS profile; handlers registered on ``session().events``
(botocore's event hooks) apply to every client made afterwards, which is how the tests
count API calls.

    with boundary(StoreError, "reading s3://bucket/key", key="key"):
        s3.get_object(...)          # ClientError NoSuchKey -> ObjectNotFound("key")
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from spmd.errors import ConfigError, ImageError, ObjectNotFound, SpmdError, StoreError

_lock = threading.RLock()
_sessions: dict = {}

#: error codes that mean "no such object" in S3
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class AwsError(SpmdError):
    """An AWS request failed; ``code`` is AWS's error code ('' when there is none)."""

    def __init__(self, message: str, *, code: str = ""):
        self.code = code
        super().__init__(message)


class ProvisionError(AwsError):
    """Provisioning could not make, repair or remove a resource of the stack."""


def session(profile: str | None = None):
    """The boto3 session of this process for an AWS profile (None: boto3's default chain)."""
    import boto3
    with _lock:
        if profile not in _sessions:
            _sessions[profile] = boto3.session.Session(profile_name=profile)
        return _sessions[profile]


class Clients:
    """boto3 clients for one region and endpoint, each made on first use and then reused."""

    def __init__(self, region: str | None = None, endpoint_url: str | None = None,
                 profile: str | None = None):
        self._region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self._clients: dict = {}
        self._lock = threading.Lock()

    @property
    def region(self) -> str:
        region = self._region or session(self.profile).region_name
        if not region:
            raise ConfigError("no AWS region is set; add region = \"us-east-1\" (or yours) to the "
                              "profile, or set AWS_DEFAULT_REGION", key="region")
        return region

    def __call__(self, service: str, attempts: int = 8):
        """The client for service ('s3', 'batch', ...), retrying a throttled or failed request
        up to ``attempts`` times in all (1: a probe that must answer at once, spmd doctor)."""
        with self._lock:
            client = self._clients.get((service, attempts))
            if client is None:
                from botocore.config import Config
                options = {"retries": {"mode": "standard", "max_attempts": attempts},
                           "user_agent_extra": "spmd", "max_pool_connections": 20}
                if service == "s3" and self.endpoint_url:
                    options["s3"] = {"addressing_style": "path"}
                # Sessions are not thread-safe; clients are, once made.
                with _lock:
                    client = session(self.profile).client(
                        service, region_name=self.region, endpoint_url=self.endpoint_url,
                        config=Config(**options))
                self._clients[(service, attempts)] = client
            return client


def error_code(exc: BaseException) -> str:
    """AWS's error code of a botocore ClientError, '' for anything else."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def translate(exc: BaseException, kind: type[SpmdError], what: str,
              key: str | None = None) -> SpmdError | None:
    """The spmd error for a botocore error met while doing ``what``; None when not botocore's.

    kind is the family of the part that failed: StoreError, ImageError or AwsError.
    """
    from botocore.exceptions import (
        BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError,
        PartialCredentialsError,
    )
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ConfigError(f"{what}: no AWS credentials were found. Run `aws configure` or "
                           "`aws sso login`, set AWS_PROFILE, or set aws_profile in the spmd "
                           "profile", key="aws_profile")
    if isinstance(exc, NoRegionError):
        return ConfigError(f"{what}: no AWS region is set; set region in the spmd profile",
                           key="region")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if kind is StoreError and key is not None and code in NOT_FOUND_CODES:
            return ObjectNotFound(key)
        text = f"{what} failed: {code}: {message}"
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            text += " (the AWS identity in use lacks a permission; see docs/aws.md)"
        return _make(kind, text, code)
    if isinstance(exc, EndpointConnectionError):
        return _make(kind, f"{what} failed: cannot reach {exc.kwargs.get('endpoint_url', 'AWS')}; "
                           "check the network, the region and endpoint_url", "")
    if isinstance(exc, BotoCoreError):
        return _make(kind, f"{what} failed: {exc}", "")
    return None


def _make(kind: type[SpmdError], message: str, code: str) -> SpmdError:
    if issubclass(kind, AwsError):
        return kind(message, code=code)
    if kind in (StoreError, ImageError):
        return kind(message)
    raise TypeError(f"no mapping of AWS errors to {kind.__name__}")


@contextmanager
def boundary(kind: type[SpmdError], what: str, key: str | None = None) -> Iterator[None]:
    """Re-raise botocore errors inside the block as spmd errors of kind (see ``translate``)."""
    try:
        yield
    except SpmdError:
        raise
    except Exception as exc:
        mapped = translate(exc, kind, what, key)
        if mapped is None:
            raise
        raise mapped from exc
