"""The Docker engine connection shared by the image builder and the local backend."""
from __future__ import annotations

import functools

from .errors import EngineError

HOW_TO_START = (
    "Start a Docker engine (Docker Desktop, or `sudo dockerd &` on Linux), or run the project's "
    "set-up script `scripts/setup.sh`, which installs and starts one where it can"
)


@functools.lru_cache(maxsize=1)
def client():
    """A connected Docker SDK client; EngineError saying what to do when none answers."""
    import docker
    from docker.errors import DockerException
    try:
        engine = docker.from_env(timeout=120)
        engine.ping()
    except DockerException as exc:
        raise EngineError(f"no Docker engine answers ({exc}). {HOW_TO_START}") from exc
    return engine


def image_exists(reference: str) -> bool:
    from docker.errors import ImageNotFound
    try:
        client().images.get(reference)
    except ImageNotFound:
        return False
    return True
