"""The base image tasks start from: chosen, checked for the client's Python, or bootstrapped.

The default is ``python:<X.Y>-slim`` for the client's X.Y. Where no registry can be
reached, ``bootstrap()`` makes ``spmd/base:python<X.Y>`` from Debian packages
(debootstrap into a root filesystem, then ``docker import``), and that is used instead.
cloudpickle needs the image's Python minor version to equal the client's.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

from . import apt
from .. import docker_engine
from ..config import redact
from ..errors import BaseImageError

log = logging.getLogger("spmd")

CLIENT_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
DEFAULT = f"python:{CLIENT_PYTHON}-slim"
BOOTSTRAPPED = f"spmd/base:python{CLIENT_PYTHON}"
DEBIAN_SUITES = {"3.11": "bookworm", "3.13": "trixie", "3.9": "bullseye"}


def resolve(requested: str | None) -> str:
    """The base image to use, present in the local engine; BaseImageError saying what to do."""
    candidates = [requested] if requested else [DEFAULT, BOOTSTRAPPED]
    for image in candidates:
        if docker_engine.image_exists(image):
            return image
    for image in candidates:
        if _try_pull(image):
            return image
    hint = ("run `spmd image bootstrap` to make one from Debian packages, or set base_image "
            "to an image that has Python " + CLIENT_PYTHON)
    raise BaseImageError(f"base image {candidates[0]} is not present and cannot be pulled; {hint}",
                         image=candidates[0])


def _try_pull(image: str) -> bool:
    from docker.errors import DockerException
    try:
        log.info("pulling base image %s", image)
        docker_engine.client().images.pull(image)
        return True
    except DockerException as exc:
        log.info("cannot pull %s: %s", image, exc)
        return False


@functools.lru_cache(maxsize=None)
def python_version(image_id: str) -> str:
    """The X.Y of the python3 in an image, by running it once."""
    out = docker_engine.client().containers.run(
        image_id, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        remove=True, network_mode="none")
    return out.decode().strip().splitlines()[-1]


def check_python(image: str) -> None:
    """BaseImageError unless the image's Python minor version is the client's."""
    from docker.errors import ContainerError
    image_id = docker_engine.client().images.get(image).id
    try:
        version = python_version(image_id)
    except ContainerError as exc:
        raise BaseImageError(f"base image {image} has no working python3 ({exc}); use an image "
                             f"with Python {CLIENT_PYTHON}", image=image) from exc
    if version != CLIENT_PYTHON:
        raise BaseImageError(
            f"base image {image} has Python {version}, but this client runs Python "
            f"{CLIENT_PYTHON}; functions pickled here only load in the same minor version. Use "
            f"a base image with Python {CLIENT_PYTHON} (e.g. {DEFAULT}) or run spmd from "
            f"Python {version}", image=image)


def apt_mirror() -> str:
    """The Debian mirror for bootstrap: the debian_mirror setting, else this machine's apt's."""
    from ..config import resolve
    mirror = apt.debian_mirror(resolve().get("debian_mirror"))
    if mirror is None:
        raise BaseImageError(
            "no Debian mirror is configured: this machine's apt configuration (/etc/apt/sources.list, "
            "/etc/apt/sources.list.d/) names none; set debian_mirror in spmd.toml or "
            "SPMD_DEBIAN_MIRROR to the URL of a Debian mirror or proxy you can reach",
            image=BOOTSTRAPPED)
    return mirror


def debootstrap_command(suite: str, rootfs: Path, mirror: str,
                        home: Path) -> tuple[list[str], dict[str, str]]:
    """debootstrap's argv and environment. The argv (which any user sees in ``ps``, and which
    debootstrap writes into the image's sources.list) names the mirror without credentials;
    wget, which downloads for debootstrap, reads them from ``home/.netrc`` (0600), for that host only."""
    bare, auth = apt.split_credentials(mirror)
    env = dict(os.environ)
    if auth:
        parts = urllib.parse.urlsplit(mirror)
        home.mkdir(mode=0o700, exist_ok=True)
        netrc = home / ".netrc"
        with open(os.open(netrc, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(f"machine {parts.hostname} "
                         f"login {_netrc_token(urllib.parse.unquote(parts.username or ''))} "
                         f"password {_netrc_token(urllib.parse.unquote(parts.password or ''))}\n")
        wgetrc = Path(env.get("HOME", "/root")) / ".wgetrc"
        if "WGETRC" not in env and wgetrc.is_file():
            env["WGETRC"] = str(wgetrc)  # the user's own wget settings (a proxy) still hold
        env["HOME"] = str(home)  # wget looks for .netrc only in $HOME
    argv = ["debootstrap", "--variant=minbase", "--include=python3", suite, str(rootfs), bare]
    return argv, env


def _netrc_token(value: str) -> str:
    """value as one .netrc token: quoted, with backslash escapes, if it has spaces or quotes."""
    if value and not any(c.isspace() or c in '"\\' for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bootstrap(tag: str = BOOTSTRAPPED, *, mirror: str | None = None) -> str:
    """Make a base image with the client's Python from Debian packages; returns its tag."""
    suite = DEBIAN_SUITES.get(CLIENT_PYTHON)
    if suite is None:
        raise BaseImageError(f"no Debian release ships Python {CLIENT_PYTHON} as python3; set "
                             "base_image to an image with that Python", image=tag)
    if shutil.which("debootstrap") is None:
        raise BaseImageError("debootstrap is not installed; on Debian or Ubuntu run "
                             "`apt-get install -y debootstrap` (as root)", image=tag)
    if os.geteuid() != 0:
        raise BaseImageError("making a base image with debootstrap needs root; run "
                             "`sudo spmd image bootstrap`", image=tag)
    mirror = mirror or apt_mirror()
    with tempfile.TemporaryDirectory(prefix="spmd-rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        log.info("making base image %s from Debian %s packages (%s); this takes about a minute",
                 tag, suite, redact(mirror))
        argv, env = debootstrap_command(suite, rootfs, mirror, Path(work) / "home")
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        archive = Path(work) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        repository, _, version = tag.rpartition(":")
        docker_engine.client().api.import_image_from_file(
            str(archive), repository=repository, tag=version,
            changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'])
    check_python(tag)
    return tag
