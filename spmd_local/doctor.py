"""``spmd doctor``'s checks of the local backend: the engine, room on the store's disk, a base
image with the client's Python."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

from spmd.images import base as baseimage
from spmd import docker_engine
from spmd.checks import Check, probe
from spmd.units import format_bytes

#: free space on the store's disk below which a run of images and results may fill it
LOW_DISK = 5 * 2**30


def checks(backend) -> Iterator[Check]:
    engine = probe("engine", _engine, docker_engine.HOW_TO_START)
    yield engine
    yield _disk(Path(backend.store_dir()))
    if engine.ok:
        yield probe("base image", lambda: _base_image(backend.settings.get("base_image")),
                    "run `spmd image bootstrap` (as root) to make one from Debian packages, or "
                    f"set base_image to an image with Python {baseimage.CLIENT_PYTHON}")


def _engine() -> str:
    version = docker_engine.client().version()
    return f"Docker {version.get('Version', '?')} answers ({version.get('Os', '?')}/{version.get('Arch', '?')})"


def _disk(root: Path) -> Check:
    where = root
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    detail = f"{format_bytes(free)} free under {root}"
    if free < LOW_DISK:
        return Check("disk", False, detail, f"free space there (task images and results need "
                     f"several GiB), or set store_dir to a larger disk")
    return Check("disk", True, detail)


def _base_image(requested: str | None) -> str:
    image = baseimage.resolve(requested)
    baseimage.check_python(image)
    return f"{image}, with Python {baseimage.CLIENT_PYTHON}"
