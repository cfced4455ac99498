"""Whose writes a job's objects are: the client refuses what its own job did not write.

The job role may write anywhere under ``jobs/`` (one role serves every job of a stack, and
Batch cannot narrow it per job), so a task of one job could overwrite another job's
outputs, which that job's client would then unpickle. Instead of a role per job, every
object under ``jobs/<id>/`` carries a MAC in its metadata (``x-amz-meta-spmd-mac``):

    bucket secret   <prefix>spmd/write-secret: 32 random bytes, made once by a client;
                    outside jobs/, so no job role can read it (permissions.job_policy)
    job key         HMAC(secret, job id): given to that job's tasks only, in their
                    SubmitJob environment (SPMD_WRITE_KEY; the job role cannot DescribeJobs)
    an object's MAC HMAC(job key, key + sha256(body)), set by whoever writes it: the client
                    (it derives any job's key) or one of the job's own tasks

A client reading a whole object of ``jobs/<id>/`` checks its MAC with job ``<id>``'s key and
refuses it (``WriteRefused``) when it is missing or wrong: written by a task of another job,
or by an spmd before this scheme. Ranged reads (the input shards tasks read) are not checked.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets

ENV = "SPMD_WRITE_KEY"  # a task's job key, hex
SECRET_KEY = "spmd/write-secret"  # under the store's prefix, outside jobs/
METADATA = "spmd-mac"  # S3 user metadata (x-amz-meta-spmd-mac)


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def job_key(secret: bytes, job_id: str) -> bytes:
    """The key a job's tasks sign with, derived from the bucket's secret."""
    return hmac.new(secret, b"spmd-job:" + job_id.encode(), hashlib.sha256).digest()


def job_of(key: str) -> str | None:
    """The job id of an object key ``jobs/<id>/...``, else None."""
    parts = key.split("/", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "jobs" and parts[1] else None


def mac(job: bytes, key: str, digest: bytes) -> str:
    """An object's MAC: its key and the sha256 of its body, under its job's key."""
    return hmac.new(job, key.encode() + b"\n" + digest, hashlib.sha256).hexdigest()


def task_key() -> bytes | None:
    """The job key a task was given, or None outside a task."""
    value = os.environ.get(ENV)
    return bytes.fromhex(value) if value else None


def load_secret(s3, bucket: str, key: str) -> bytes:
    """The bucket's secret at key, made when missing (a conditional put: two clients making
    it at once keep the first)."""
    from .aws import error_code
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if error_code(exc) not in ("NoSuchKey", "404"):
            raise
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=new_secret(), IfNoneMatch="*")
    except Exception as exc:
        if error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
            raise
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
