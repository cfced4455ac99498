"""S3Store: the object store of the AWS backend, one S3 bucket (and an optional key prefix).

The URL a task opens it with is ``s3://bucket/prefix?region=R`` (plus ``endpoint_url=``
when one is configured). On the client, the bucket is created on first use when it is
missing: tagged with the stack, encrypted by default (SSE-S3), public access blocked,
and a lifecycle rule that expires ``jobs/`` after ``retention_days``. In a task the store
never creates anything (the job role may only read and write ``jobs/``).

A PUT on S3 is atomic (readers see the old object or the new one), ranged reads are
HTTP ``Range`` requests, and listing pages through ListObjectsV2 1,000 keys at a time.
A GetObject denied (403) is a missing object only when one listing of that key (allowed
to the job role, see ``permissions.job_policy``) confirms it is not there; otherwise
the denial is a StoreError.
An object above 5 GB (S3's limit on one PutObject) goes up as a multipart upload (boto3's
managed transfer), which S3 also completes atomically. DeleteObjects answers 200 even
when keys fail: its per-key ``Errors`` are read and raised as a StoreError.
Every object under ``jobs/<id>/`` carries its writer's MAC; a client reading a whole one
refuses it (``ResultDamaged``) unless job ``<id>``'s key made it (``spmd_aws.signing``).
"""
from __future__ import annotations

import os
import tempfile
import threading
from typing import Iterator
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from spmd.errors import ObjectNotFound, ResultDamaged, StoreError
from spmd.stores.object_store import ObjectStore

from . import signing
from .aws import Clients, boundary, error_code
from .stack import Stack

#: error codes of a GetObject S3 denies (a missing key reads so without s3:ListBucket)
DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden"})


class S3Store(ObjectStore):
    """Keys are S3 object keys under ``prefix`` in ``bucket``."""

    scheme = "s3"
    #: keys per ListObjectsV2 request (S3's maximum)
    page_size = 1000
    #: the largest object one PutObject may write (S3's limit); above it, a multipart upload
    single_put_limit = 5 * 2**30
    #: the part size of a multipart upload (S3: at least 5 MiB, at most 10,000 parts)
    part_size = 64 * 2**20

    def __init__(self, bucket: str, prefix: str = "", *, region: str | None = None,
                 endpoint_url: str | None = None, profile: str | None = None,
                 create: bool = False, stack: Stack | None = None, retention_days: int = 30,
                 clients: Clients | None = None):
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid bucket name {bucket!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.clients = clients or Clients(region, endpoint_url, profile)
        self.create = create
        self.stack = stack or Stack()
        self.retention_days = retention_days
        self._ready = not create
        self._ready_lock = threading.Lock()
        self._task_key = signing.task_key()  # in a task: its job's key (it signs, never checks)
        self._secret: bytes | None = None  # on a client: the bucket's (spmd_aws.signing)

    @classmethod
    def from_url(cls, url: str) -> "S3Store":
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an s3:// URL: {url!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(parts.netloc, unquote(parts.path), region=query.get("region"),
                   endpoint_url=query.get("endpoint_url"))

    @property
    def url(self) -> str:
        query = {"region": self.clients.region}
        if self.clients.endpoint_url:
            query["endpoint_url"] = self.clients.endpoint_url
        path = quote(self.prefix.rstrip("/"))
        return f"s3://{self.bucket}{'/' + path if path else ''}?{urlencode(query)}"

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix})"

    @property
    def s3(self):
        if not self._ready:
            with self._ready_lock:
                if not self._ready:
                    from .provision import ensure_bucket
                    ensure_bucket(self.clients, self.bucket, self.stack, self.retention_days,
                                  prefix=self.prefix)
                    self._ready = True
        return self.clients("s3")

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    # -- whose writes (spmd_aws.signing) --------------------------------------------

    def job_key(self, job_id: str) -> bytes:
        """The key job_id's tasks sign with (a client only: from the bucket's secret)."""
        if self._secret is None:
            with boundary(StoreError, f"reading {self._where(signing.SECRET_KEY)}"):
                self._secret = signing.load_secret(self.s3, self.bucket,
                                                   self.prefix + signing.SECRET_KEY)
        return signing.job_key(self._secret, job_id)

    def _signing_key(self, key: str) -> bytes | None:
        job = signing.job_of(key)
        if job is None:
            return None
        return self._task_key or self.job_key(job)

    def _metadata(self, key: str, digest: bytes) -> dict[str, str]:
        """The user metadata of an object written under key: its MAC under jobs/."""
        secret = self._signing_key(key)
        return {signing.METADATA: signing.mac(secret, key, digest)} if secret else {}

    def _check(self, key: str, metadata: dict, digest: bytes) -> None:
        """ResultDamaged when an object of jobs/<id>/ does not carry job <id>'s MAC (a client
        checks; a task does not)."""
        job = signing.job_of(key)
        if self._task_key is not None or job is None:
            return
        expected = signing.mac(self.job_key(job), key, digest)
        import hmac
        if not hmac.compare_digest(expected, (metadata or {}).get(signing.METADATA, "")):
            raise ResultDamaged(key, f"it was not written by job {job}'s tasks or client (its "
                                "spmd write signature is missing or wrong: a task of another "
                                "job overwrote it, or an spmd without write signatures wrote it), so it is "
                                "never unpickled", job_id=job)

    def put(self, key: str, data: bytes) -> None:
        import hashlib
        with boundary(StoreError, f"writing {self._where(key)}"):
            metadata = self._metadata(key, hashlib.sha256(data).digest())
            if len(data) <= self.single_put_limit:
                self.s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data,
                                   Metadata=metadata)
                return
            import io

            from boto3.s3.transfer import TransferConfig
            part = max(self.part_size, -(-len(data) // 10_000))
            self.s3.upload_fileobj(io.BytesIO(data), self.bucket, self.prefix + key,
                                   ExtraArgs={"Metadata": metadata},
                                   Config=TransferConfig(multipart_threshold=part,
                                                         multipart_chunksize=part))

    def put_new(self, key: str, data: bytes) -> bool:
        """Write key only if no object is there (S3's conditional write, If-None-Match: *);
        whether this call wrote it (False: another writer was first)."""
        import hashlib
        with boundary(StoreError, f"writing {self._where(key)}"):
            try:
                self.s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data,
                                   IfNoneMatch="*",
                                   Metadata=self._metadata(key, hashlib.sha256(data).digest()))
            except Exception as exc:
                if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict",
                                       "412"):
                    return False
                raise
        return True

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        """boto3's managed upload: multipart in parallel parts above 8 MB, streamed from disk."""
        with boundary(StoreError, f"writing {self._where(key)}"):
            metadata = self._metadata(key, _file_digest(path))
            self.s3.upload_file(os.fspath(path), self.bucket, self.prefix + key,
                                ExtraArgs={"Metadata": metadata})

    def get_file(self, key: str, path: str | os.PathLike) -> None:
        """boto3's managed download (ranged parts, streamed to disk), renamed into place."""
        target = os.path.abspath(os.fspath(path))
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".spmd-")
        os.close(fd)
        try:
            with boundary(StoreError, f"reading {self._where(key)}", key=key):
                checked = self._task_key is None and signing.job_of(key) is not None
                metadata = (self.s3.head_object(Bucket=self.bucket, Key=self.prefix + key)
                            .get("Metadata") if checked else None)
                self.s3.download_file(self.bucket, self.prefix + key, tmp)
            if checked:
                self._check(key, metadata, _file_digest(tmp))
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        request = {"Bucket": self.bucket, "Key": self.prefix + key}
        if start is not None or end is not None:
            start = start or 0
            if end is not None and end <= start:
                return b""
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with boundary(StoreError, f"reading {self._where(key)}", key=key):
            try:
                response = self.s3.get_object(**request)
            except Exception as exc:
                if error_code(exc) == "InvalidRange":  # the range starts past the end
                    return b""
                if error_code(exc) in DENIED_CODES and not self._listed(key):
                    raise ObjectNotFound(key) from exc
                raise
            body = response["Body"].read()
        if "Range" not in request:  # a whole object: whose write it is, checked
            import hashlib
            self._check(key, response.get("Metadata"), hashlib.sha256(body).digest())
        return body

    def _listed(self, key: str) -> bool:
        """Whether key exists, by listing it: S3 answers a GetObject of a missing key with
        403 unless the caller may list the bucket, which a job role may only under its
        prefix (``permissions.job_policy``). A 403 is a missing object only when this
        listing, which that policy allows, does not show the key."""
        try:
            page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + key,
                                           MaxKeys=1)
        except Exception as exc:
            if error_code(exc) in DENIED_CODES:
                return True  # cannot tell: the 403 stands
            raise
        return any(item["Key"] == self.prefix + key for item in page.get("Contents", ()))

    def list(self, prefix: str) -> Iterator[str]:
        return self.list_after(prefix)

    def list_after(self, prefix: str, start_after: str = "") -> Iterator[str]:
        # S3 lists keys in UTF-8 byte order, which is Python's order of str: already sorted.
        strip = len(self.prefix)
        after = {"StartAfter": self.prefix + start_after} if start_after else {}
        with boundary(StoreError, f"listing {self._where(prefix)}"):
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix, **after,
                PaginationConfig={"PageSize": self.page_size})
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"][strip:]

    def delete(self, key: str) -> None:
        with boundary(StoreError, f"deleting {self._where(key)}"):
            self.s3.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def exposed(self, key: str) -> list[str]:
        """Grants in the object's ACL to anyone but the bucket's owner (AllUsers,
        AuthenticatedUsers, another account): spmd.testing.PrivacyContract wants none."""
        with boundary(StoreError, f"reading the ACL of {self._where(key)}", key=key):
            acl = self.s3.get_object_acl(Bucket=self.bucket, Key=self.prefix + key)
        owner = acl.get("Owner", {}).get("ID")
        return [f"{self._where(key)}: {grant.get('Permission')} to "
                f"{grant['Grantee'].get('URI') or grant['Grantee'].get('ID')}"
                for grant in acl.get("Grants", [])
                if grant["Grantee"].get("Type") == "Group" or grant["Grantee"].get("ID") != owner]

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under prefix, 1,000 per request."""
        keys = list(self.list(prefix))
        failed: list[dict] = []
        with boundary(StoreError, f"deleting {self._where(prefix)}*"):
            for i in range(0, len(keys), 1000):
                response = self.s3.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self.prefix + k} for k in keys[i:i + 1000]], "Quiet": True})
                failed += response.get("Errors") or ()
        if failed:
            shown = "; ".join(f"{e.get('Key')}: {e.get('Code')} ({e.get('Message', '')})"
                              for e in failed[:3])
            more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
            hint = (" (the AWS identity in use lacks s3:DeleteObject; see docs/aws.md)"
                    if any(e.get("Code") == "AccessDenied" for e in failed) else "")
            raise StoreError(f"deleting {self._where(prefix)}*: {len(failed)} of {len(keys)} "
                             f"objects were not deleted: {shown}{more}{hint}")
        return len(keys)


def _file_digest(path: str | os.PathLike) -> bytes:
    """The sha256 of a file, read in 1 MiB blocks."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.digest()
