"""Integrity of what the client unpickles: each task output signed by the job's scheduler with a
per-job key that no task ever sees.

    LocalQueue.submit ──> integrity/<job>/key      32 random bytes, 0600, outside jobs/<job>/,
                                                   so never in a task container's mounts
    a task writes output/<task>.pkl (it may write anything there: third-party code runs in it)
    its attempt ends ──> the scheduler (on the host) signs the file as it is then:
                         integrity/<job>/<sha256(object key)> = HMAC-SHA256(key, object key, bytes)
    the client reads output/<task>.pkl ──> verify() before unpickling:
        signed and equal  ──> unpickle
        not signed yet    ──> as if not written yet (the attempt has not ended)
        signed, different ──> ResultDamaged (written after its attempt ended), never unpickled

Why a keyed hash the scheduler writes, not a plain manifest of hashes: the signature can be
kept anywhere and cannot be forged by whoever can write the job's folder, and the object key
is inside the MAC, so a signed output cannot be copied over another task's or another job's.
Only stores on this machine's file system with a scheduler of spmd's own (local) sign; a store
without a key (AWS, Slurm, a job made before this) is read as before: its privacy rests on the
bucket's policy or the folder's modes.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .errors import StoreError

PREFIX = "integrity/"
_KEYS: dict[tuple[str, str], bytes | None] = {}


class Unsigned(Exception):
    """The object has no signature yet."""


def _folder(store, job_id: str) -> Path | None:
    local = getattr(store, "path", None)
    return Path(local(f"{PREFIX}{job_id}")) if callable(local) else None


def make_key(store, job_id: str) -> None:
    """Give the job its signing key (a directory store only); made once, readable by its user."""
    folder = _folder(store, job_id)
    if folder is None:
        return
    if getattr(store, "shared", False):
        store.make_folders(folder)  # the group reads the key, to check what it unpickles
    else:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(folder / "key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.fchmod(fd, getattr(store, "file_mode", 0o600))
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))


def key_of(store, job_id: str) -> bytes | None:
    """The job's key, None when its store or backend does not sign (a task never has one)."""
    folder = _folder(store, job_id)
    if folder is None:
        return None
    cached = _KEYS.get((str(folder), job_id))
    if cached is None:
        try:
            cached = (folder / "key").read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError as exc:  # never read unverified what cannot be verified
            raise StoreError(f"cannot read job {job_id}'s signing key {folder / 'key'} ({exc}), "
                             f"so its results cannot be verified and are not read; read them "
                             f"as the store's owner, or ask the owner to share the store with "
                             f"your group (share_with_group)") from exc
        _KEYS[(str(folder), job_id)] = cached
    return cached


def forget(store, job_id: str) -> None:
    """Remove the job's key and signatures (``spmd clean``)."""
    import shutil
    folder = _folder(store, job_id)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        _KEYS.pop((str(folder), job_id), None)


def _mac(key: bytes, object_key: str, chunks) -> str:
    mac = hmac.new(key, object_key.encode() + b"\0", hashlib.sha256)
    for chunk in chunks:
        mac.update(chunk)
    return mac.hexdigest()


def _signature_path(folder: Path, object_key: str) -> Path:
    return folder / hashlib.sha256(object_key.encode()).hexdigest()


def sign(store, job_id: str, object_key: str) -> None:
    """Sign the object as it is now (the scheduler, once an attempt has ended). No key or no
    object: nothing to sign."""
    key = key_of(store, job_id)
    if key is None:
        return
    try:
        handle = open(store.path(object_key), "rb")
    except FileNotFoundError:
        return
    with handle:
        mac = _mac(key, object_key, iter(lambda: handle.read(1 << 20), b""))
    target = _signature_path(_folder(store, job_id), object_key)
    tmp = target.with_name(".tmp-" + target.name)
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        os.fchmod(out.fileno(), getattr(store, "file_mode", 0o600))
        out.write(mac)
    os.replace(tmp, target)


def verify(store, job_id: str, object_key: str, data) -> bool:
    """Whether data may be unpickled as the object: True when signed and equal, or when the job
    has no key; Unsigned when it is not signed yet; False when it differs from what was signed."""
    key = key_of(store, job_id)
    if key is None:
        return True
    try:
        expected = _signature_path(_folder(store, job_id), object_key).read_text()
    except FileNotFoundError:
        raise Unsigned(object_key) from None
    return hmac.compare_digest(expected, _mac(key, object_key, [data]))
