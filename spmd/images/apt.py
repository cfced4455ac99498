"""Debian packages in task images, and the Debian mirror they come from.

The mirror is the one this machine's apt uses (``/etc/apt/sources.list`` and
``sources.list.d``, one-line or deb822 format), unless the ``debian_mirror`` config key
names another; spmd hard-codes no mirror. Packages go into a *system layer*: an image
made from the base by one container with network access for ``apt-get`` only, committed,
and tagged by the base image's id, the package list and the mirror. The task image is then
built on top of it with no network, as before, so the pip step stays offline.

The mirror is checked as a URL with no shell syntax (``config.url``). Its credentials
(``https://user:token@host/debian``) go into an apt ``auth.conf`` file bind-mounted into that
one container, never into its command, the committed image's history or a log line.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import tempfile
import urllib.parse
from pathlib import Path
from typing import Iterable

from .. import config, docker_engine
from ..errors import ImageError, SystemPackageError

log = logging.getLogger("spmd")

SYSTEM_REPOSITORY = "spmd-system"
# Debian policy 5.6.7: lower case letters, digits, + - . ; at least two characters.
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]+(=[A-Za-z0-9.+~:\-]+)?$")
# Debian release names and aliases; an Ubuntu or other archive is not a Debian mirror.
DEBIAN_SUITES = frozenset({"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
                           "oldoldstable", "oldstable", "stable", "testing", "unstable"})


def check_names(packages: Iterable[str]) -> tuple[str, ...]:
    """The package names, stripped; SystemPackageError naming one that is not a Debian name."""
    names = []
    for package in packages:
        if not isinstance(package, str) or not _NAME.match(package.strip()):
            raise SystemPackageError(
                f"system package {package!r} is not a Debian package name (lower-case letters, "
                "digits, '+', '-', '.'; optionally '=VERSION'); find the name with "
                "`apt-cache search WORD` or on packages.debian.org", package=str(package))
        names.append(package.strip())
    return tuple(names)


def _entries(text: str) -> Iterable[tuple[list[str], list[str], list[str]]]:
    """(types, uris, suites) of each entry in a sources file, one-line or deb822."""
    if re.search(r"^\s*URIs\s*:", text, re.MULTILINE | re.IGNORECASE):
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, list[str]] = {}
            for line in stanza.splitlines():
                match = re.match(r"^([A-Za-z-]+)\s*:\s*(.*)$", line)
                if match and not line.lstrip().startswith("#"):
                    fields[match.group(1).lower()] = match.group(2).split()
            if fields.get("enabled", ["yes"])[0].lower() == "no":
                continue
            yield fields.get("types", []), fields.get("uris", []), fields.get("suites", [])
        return
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3:
            yield [line[0]], [line[1]], [line[2]]


def mirror_from_sources(texts: Iterable[str]) -> str | None:
    """The first http(s) URI of a binary entry for a Debian release (not -security) in texts."""
    for text in texts:
        for types, uris, suites in _entries(text):
            debian = any(s.split("-")[0].split("/")[0] in DEBIAN_SUITES and "security" not in s
                         for s in suites)
            if "deb" in types and debian:
                for uri in uris:
                    if uri.startswith(("http://", "https://")):
                        return uri.rstrip("/")
    return None


def machine_mirror(root: Path = Path("/")) -> str | None:
    """The Debian mirror in this machine's apt configuration under root, or None."""
    etc = root / "etc" / "apt"
    paths = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list")),
             *sorted((etc / "sources.list.d").glob("*.sources"))]
    return mirror_from_sources(p.read_text(errors="replace") for p in paths if p.is_file())


def debian_mirror(configured: str | None = None) -> str | None:
    """The mirror to use: the debian_mirror setting, else this machine's apt's, else None;
    either is checked as a URL with no shell syntax (it reaches apt's sources line)."""
    mirror = configured or machine_mirror()
    if not mirror:
        return None
    try:
        return config.url(mirror)
    except ValueError as exc:
        raise SystemPackageError(f"debian_mirror {config.redact(mirror)!r} is not usable: {exc}; "
                                 "give the http:// or https:// URL of a Debian archive",
                                 package=None) from exc


def split_credentials(mirror: str) -> tuple[str, str | None]:
    """(the mirror without user and password, apt auth.conf lines for them or None)."""
    parts = urllib.parse.urlsplit(mirror)
    if parts.username is None and parts.password is None:
        return mirror, None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    bare = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    login = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    return bare, f"machine {host}{parts.path} login {login} password {password}\n"


def layer_tag(base_id: str, packages: tuple[str, ...], mirror: str | None = None) -> str:
    """The system layer's tag: the base image's id, the sorted package list and the mirror the
    packages came from (not its credentials), so a layer from another mirror is never reused."""
    where = split_credentials(mirror)[0] if mirror else None
    digest = hashlib.sha256(repr((base_id, sorted(packages), where)).encode())
    return f"{SYSTEM_REPOSITORY}:{digest.hexdigest()[:20]}"


AUTH_DIR = "/run/spmd-apt"  # where the layer's container sees the mirror's auth.conf


def install_script(packages: tuple[str, ...], mirror: str | None, auth: bool = False) -> str:
    """The shell command that installs packages in the layer's container, from mirror (or the
    image's own sources). It names the mirror without credentials; those are in auth.conf."""
    # A stalled connection to the mirror retries, then fails, instead of hanging the build.
    options = "-o Acquire::Retries=3 -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30 "
    setup = ""
    if mirror:
        bare = config.url(split_credentials(mirror)[0])  # checked again: it goes into a shell
        # Only the chosen mirror, for the image's own release; the image's sources stay as they are.
        setup = (f". /etc/os-release && echo {shlex.quote('deb ' + bare)} \"$VERSION_CODENAME main\" "
                 "> /tmp/spmd-apt.list && ")
        options += "-o Dir::Etc::SourceList=/tmp/spmd-apt.list -o Dir::Etc::SourceParts=/nonexistent "
        if auth:
            options += f"-o Dir::Etc::netrc={AUTH_DIR}/auth.conf "
    names = " ".join(shlex.quote(p) for p in packages)
    return (f"{setup}export DEBIAN_FRONTEND=noninteractive "
            f"&& apt-get {options}update -q "
            f"&& apt-get {options}install -y -q --no-install-recommends {names} "
            "&& apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/spmd-apt.list")


def _failure(log_text: str, packages: tuple[str, ...], mirror: str | None) -> ImageError:
    """The error for a failed layer build: mirror unreachable (apt update only warns), or a package."""
    log_text = re.sub(r"\x1b\[[0-9;]*m", "", log_text)
    if re.search(r"Failed to fetch|Temporary failure resolving|Could not resolve|Unable to connect",
                 log_text):
        where = mirror or "the image's own apt sources"
        return ImageError(f"the Debian mirror ({where}) cannot be reached from a container; set "
                          "debian_mirror (spmd.toml or SPMD_DEBIAN_MIRROR) to a mirror or proxy "
                          f"your containers can reach\n{log_text[-1500:]}")
    missing = re.search(r"Unable to locate package (\S+)|Package '?([^' ]+)'? has no installation "
                        r"candidate|E: Version '[^']+' for '([^']+)' was not found", log_text)
    if missing:
        name = next(g for g in missing.groups() if g)
        return SystemPackageError(
            f"system package {name!r} is not in the image's Debian release"
            f"{' at ' + mirror if mirror else ''}; check the name with `apt-cache search` or on "
            "packages.debian.org for that release, and fix system_packages", package=name)
    return ImageError(f"installing system packages {', '.join(packages)} failed:\n{log_text[-2000:]}")


def ensure_layer(base: str, base_id: str, packages: tuple[str, ...], mirror: str | None) -> str:
    """The system layer image for base + packages, made (with network, for apt) if missing:
    one container of base runs apt as root and is committed with base's own config."""
    tag = layer_tag(base_id, packages, mirror)
    if docker_engine.image_exists(tag):
        return tag
    from docker.errors import APIError
    from docker.types import Mount
    bare, auth = split_credentials(mirror) if mirror else (None, None)
    log.info("installing system packages %s on %s (from %s)", ", ".join(packages), base,
             bare or "the image's apt sources")
    engine = docker_engine.client()
    with tempfile.TemporaryDirectory(prefix="spmd-apt-") as folder:
        mounts = []
        if auth:
            path = os.path.join(folder, "auth.conf")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
                handle.write(auth)
            os.chmod(path, 0o644)  # apt's download methods read it as _apt; its folder is 0700
            # A mount, not a volume: a volume would stay in the committed image's config.
            mounts.append(Mount(AUTH_DIR, folder, type="bind", read_only=True))
        try:
            base_image = engine.images.get(base)
            shell = ["-c", install_script(packages, mirror, bool(auth))]
            entrypoint = ["/bin/sh"] if _config(base_image).get("Entrypoint") else None
            container = engine.containers.create(
                base, shell if entrypoint else ["/bin/sh", *shell], entrypoint=entrypoint,
                user="root", working_dir="/", mounts=mounts, labels={"spmd.managed": "1"})
        except APIError as exc:
            raise ImageError(f"installing system packages failed: {exc}") from exc
        try:
            container.start()
            code = container.wait()["StatusCode"]
            if code != 0:
                text = container.logs().decode(errors="replace")
                raise _failure(text, packages, bare)
            container.commit(*tag.split(":"), changes=_restore(base_image))
        except APIError as exc:
            raise ImageError(f"installing system packages failed: {exc}") from exc
        finally:
            container.remove(force=True)
    return tag


def _config(image) -> dict:
    return image.attrs.get("Config") or {}


def _restore(base_image) -> list[str]:
    """Dockerfile instructions giving a committed layer its base's entrypoint, command, user and
    folder (the install container ran sh as root in /), and spmd's label."""
    conf = _config(base_image)
    entrypoint = [f"ENTRYPOINT {json.dumps(conf['Entrypoint'])}"] if conf.get("Entrypoint") else []
    return [*entrypoint, f"CMD {json.dumps(conf.get('Cmd') or [])}",
            f"USER {conf.get('User') or 'root'}",
            f"WORKDIR {conf.get('WorkingDir') or '/'}",
            'LABEL spmd.managed="1"']
