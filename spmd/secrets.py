"""Secrets and licence files for every task, kept out of everything spmd writes.

    Knot(..., secrets=[Secret("FS_LICENSE", file="~/freesurfer/license.txt"),
                       Secret("XNAT_TOKEN", value=token)])

    client   checks each (a name, one of value/file, a readable file) at Knot()
    backend  delivers them its own way (Backend.deliver_secrets): local and process keep
             them in <store>/spmd/secrets/<job>/ (0700, files 0600), mounted read-only
             into that job's tasks only and removed when the job's scheduler ends
    backend  or through the environment (aws: Batch puts them there from Secrets Manager):
             a value secret as its own variable, a file secret's content base64-encoded in
             SPMD_SECRET_FILE_<NAME>
    task     apply(): a value secret becomes the environment variable of its name; a file
             secret a 0600 file whose path is in that variable

A secret's value is never in a pickle, spec.json, a log, the report or ``spmd config``.
"""
from __future__ import annotations

import base64
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from . import protocol
from .errors import ConfigError

#: the environment variable that names the folder of a task's secrets (files NAME.value, NAME.file)
SECRETS_DIR = protocol.SECRETS_DIR
#: the key prefix under which a directory store keeps a job's secrets until the job ends
PREFIX = "secrets/"
#: the variable that carries a file secret's content, base64, where a backend delivers secrets
#: through the environment
FILE_ENV = "SPMD_SECRET_FILE_"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Secret:
    """A value (``value=``) or a file's content (``file=``) every task of a Knot gets, under
    the environment variable ``name``; never stored with the job."""

    name: str
    value: str | None = field(default=None, repr=False)
    file: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name) \
                or self.name.startswith("SPMD_"):
            raise ConfigError(f"Secret name {self.name!r} must be an environment variable name "
                              f"(letters, digits, _; not starting with SPMD_)")
        if (self.value is None) == (self.file is None):
            raise ConfigError(f"Secret({self.name!r}): give exactly one of value= or file=")
        if self.value is not None and not isinstance(self.value, str):
            raise ConfigError(f"Secret({self.name!r}, value=...) must be a string")
        if self.file is not None:
            path = Path(os.path.expanduser(str(self.file)))
            if not path.is_file() or not os.access(path, os.R_OK):
                raise ConfigError(f"Secret({self.name!r}, file={self.file!r}): no readable file "
                                  f"there; give the path of the file every task needs")

    def content(self) -> bytes:
        """What the task gets: the value, or the file's bytes (read now, on the client)."""
        if self.value is not None:
            return self.value.encode()
        return Path(os.path.expanduser(str(self.file))).read_bytes()

    @property
    def kind(self) -> str:
        return "value" if self.value is not None else "file"


def check(secrets: Iterable[Secret], env: Mapping[str, str]) -> tuple[Secret, ...]:
    """The Knot's secrets, refused when not Secrets, named twice, or also in env."""
    out = tuple(secrets or ())
    bad = [s for s in out if not isinstance(s, Secret)]
    if bad:
        raise ConfigError(f"secrets must be spmd.Secret(...) values, not {type(bad[0]).__name__}")
    names = [s.name for s in out]
    twice = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(env)))
    if twice:
        raise ConfigError(f"secret {twice[0]!r} is given twice (in secrets, or in env too): "
                          f"give it once, as a Secret")
    return out


# -- a directory store's delivery (local, process) ------------------------------------------

def folder(store, job_id: str) -> Path:
    """Where a directory store keeps the job's secrets (outside jobs/<id>/)."""
    return Path(store.path(f"{PREFIX}{job_id}"))


def write(store, job_id: str, secrets: Iterable[Secret]) -> Path:
    """Put the job's secrets in its private folder; returns the folder."""
    where = folder(store, job_id)
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(where, 0o700)
    for secret in secrets:
        path = where / f"{secret.name}.{secret.kind}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret.content())
    return where


def remove(store, job_id: str) -> None:
    """Remove the job's secrets (its scheduler at its end; ``spmd clean``)."""
    where = folder(store, job_id)
    if where.is_dir():
        for path in where.iterdir():
            path.unlink(missing_ok=True)
        where.rmdir()


# -- in the task -----------------------------------------------------------------------------

def apply(environ=os.environ) -> list[str]:
    """Set each delivered secret's environment variable; returns their names. A file secret
    whose folder is not private is copied into a private temporary file first; one delivered
    in SPMD_SECRET_FILE_<NAME> is written to a private temporary file (the variable removed)."""
    names = []
    for variable in sorted(v for v in environ if v.startswith(FILE_ENV)):
        name = variable[len(FILE_ENV):]
        fd, path = tempfile.mkstemp(prefix="spmd-secret-")  # 0600
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64decode(environ.pop(variable)))
        environ[name] = path
        names.append(name)
    where = environ.get(SECRETS_DIR)
    if not where or not os.path.isdir(where):
        return names
    for entry in sorted(os.listdir(where)):
        name, _, kind = entry.rpartition(".")
        path = os.path.join(where, entry)
        if kind == "value":
            with open(path) as handle:
                environ[name] = handle.read()
        elif kind == "file":
            environ[name] = path if stat.S_IMODE(os.stat(path).st_mode) == 0o600 else _private_copy(path)
        else:
            continue
        names.append(name)
    return names


def _private_copy(path: str) -> str:
    fd, copy = tempfile.mkstemp(prefix="spmd-secret-")
    with os.fdopen(fd, "wb") as out, open(path, "rb") as source:
        out.write(source.read())
    return copy
