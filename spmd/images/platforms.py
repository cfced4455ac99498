"""The platform a task image is built for ("linux/amd64", "linux/arm64"), and whether the
engine can build it.

A backend names the platform its tasks run on (``Backend.image_platform``; None: the
engine's own, as for local containers). Building for another CPU needs the engine to
emulate it (binfmt_misc with qemu) and a base image of that CPU; both are checked on the
client, before anything is built or submitted, instead of every task dying later with
"exec format error".
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from .. import docker_engine
from ..errors import PlatformError

#: Docker's name of a CPU -> the names the kernel, qemu and wheels use for it
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "amd64": "amd64", "arm64": "arm64"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def normalize(platform: str) -> str:
    """``linux/<docker arch>`` for any common spelling ("x86_64", "linux/aarch64", ...)."""
    arch = platform.rsplit("/", 1)[-1].lower()
    if arch not in _ALIASES:
        raise PlatformError(f"unknown platform {platform!r}: use linux/amd64 or linux/arm64",
                            platform=platform)
    return f"linux/{_ALIASES[arch]}"


def engine_platform() -> str:
    """The platform of the Docker engine's own CPU."""
    return normalize(docker_engine.client().info().get("Architecture", "x86_64"))


def machine(platform: str) -> str:
    """The CPU name wheels and qemu use for a platform (x86_64, aarch64)."""
    return MACHINE[normalize(platform).split("/")[1]]


def _engine_is_here() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    return not host or urlsplit(host).scheme in ("unix", "npipe")


def can_emulate(platform: str, binfmt: Path = BINFMT) -> bool | None:
    """Whether this machine's kernel runs binaries of platform through qemu (binfmt_misc);
    None when the engine runs elsewhere and this cannot be told from here."""
    if not _engine_is_here():
        return None
    entry = binfmt / f"qemu-{machine(platform)}"
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def check(base_image: str, platform: str, binfmt: Path = BINFMT) -> None:
    """PlatformError, saying how to fix it, when the engine cannot build for platform."""
    target = normalize(platform)
    engine = engine_platform()
    if target != engine and can_emulate(target, binfmt) is False:
        raise PlatformError(
            f"tasks run on {target} but the Docker engine runs on {engine} and cannot emulate "
            f"{target} (no binfmt_misc entry qemu-{machine(target)} in {binfmt}). Register "
            f"qemu emulation (`docker run --privileged --rm tonistiigi/binfmt --install "
            f"{target.split('/')[1]}`, or install qemu-user-static), build on a {target} "
            f"machine, or set architecture to the engine's ({engine.split('/')[1]})",
            platform=target)
    attrs = docker_engine.client().images.get(base_image).attrs
    base = normalize(f"{attrs.get('Os', 'linux')}/{attrs.get('Architecture', 'amd64')}")
    if base != target:
        raise PlatformError(
            f"the base image {base_image} is {base}, but tasks run on {target}: set base_image "
            f"to an image for {target} (e.g. `docker pull --platform {target} python:3.11-slim`), "
            f"or set architecture to match the base image ({base.split('/')[1]})",
            platform=target)
