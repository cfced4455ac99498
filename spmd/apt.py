"""Debian packages in task images, and the Debian mirror they come from.

The mirror is the one this machine's apt uses (``/etc/apt/sources.list`` and
``sources.list.d``, one-line or deb822 format), unless the ``debian_mirror`` config key
names another; spmd hard-codes no mirror. Packages go into a *system layer*: an image
built from the base with network access for ``apt-get`` only, tagged by the base image's
id and the package list. The task image is then built on top of it with no network, as
before, so the pip step stays offline.
"""
from __future__ import annotations

import hashlib
import logging
import re
import shlex
from pathlib import Path
from typing import Iterable

from . import docker_engine
from .errors import ImageError, SystemPackageError

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
    """The mirror to use: the debian_mirror setting, else this machine's apt's, else None."""
    mirror = configured or machine_mirror()
    if mirror and not mirror.startswith(("http://", "https://")):
        raise SystemPackageError(f"debian_mirror {mirror!r} must be an http:// or https:// URL of "
                                 "a Debian archive", package=None)
    return mirror.rstrip("/") if mirror else None


def layer_tag(base_id: str, packages: tuple[str, ...]) -> str:
    """The system layer's tag: the base image's id and the sorted package list."""
    digest = hashlib.sha256(repr((base_id, sorted(packages))).encode())
    return f"{SYSTEM_REPOSITORY}:{digest.hexdigest()[:20]}"


def dockerfile(base: str, packages: tuple[str, ...], mirror: str | None) -> str:
    """A Dockerfile installing packages on base, from mirror (or the image's own sources)."""
    # A stalled connection to the mirror retries, then fails, instead of hanging the build.
    options = "-o Acquire::Retries=3 -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30 "
    setup = ""
    if mirror:
        # Only the chosen mirror, for the image's own release; the image's sources stay as they are.
        setup = (f'. /etc/os-release && echo "deb {shlex.quote(mirror)} $VERSION_CODENAME main" '
                 "> /tmp/spmd-apt.list && ")
        options += "-o Dir::Etc::SourceList=/tmp/spmd-apt.list -o Dir::Etc::SourceParts=/nonexistent "
    names = " ".join(shlex.quote(p) for p in packages)
    return (f"FROM {base}\n"
            f"RUN {setup}export DEBIAN_FRONTEND=noninteractive "
            f"&& apt-get {options}update -q "
            f"&& apt-get {options}install -y -q --no-install-recommends {names} "
            "&& apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/spmd-apt.list\n")


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
    """The system layer image for base + packages, built (with network, for apt) if missing."""
    tag = layer_tag(base_id, packages)
    if docker_engine.image_exists(tag):
        return tag
    import io

    from docker.errors import APIError, BuildError
    log.info("installing system packages %s on %s (from %s)", ", ".join(packages), base,
             mirror or "the image's apt sources")
    try:
        docker_engine.client().images.build(
            fileobj=io.BytesIO(dockerfile(base, packages, mirror).encode()), tag=tag, rm=True,
            forcerm=True, pull=False, labels={"spmd.managed": "1"})
    except BuildError as exc:
        text = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise _failure(text, packages, mirror) from exc
    except APIError as exc:
        raise ImageError(f"installing system packages failed: {exc}") from exc
    return tag
