"""Task images: built once per content, on the client, with the Docker SDK, for every backend.

The tag is a hash of everything that goes into the image: the base image's id, the
platform (CPU) it is built for, the Python version, the user's requirements, the worker's
runtime requirements and the source of the packages copied in. Every backend gets the same
image for the same Knot (``spmd.backend.task_runtime``). The function is *not* in the
image; it travels through the store, so changing it never rebuilds anything.

Requirements are resolved on the client into a wheelhouse (``pip download`` for the
image's platform and Python) and installed with ``--no-index`` while the build runs
with no network, so an air-gapped engine builds the same image.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from . import baseimage, docker_engine, platforms
from .errors import ImageError, RequirementError
from .image_registry import ImageRegistry

log = logging.getLogger("spmd")

LOCAL_REPOSITORY = "spmd-task"
CORE_RUNTIME = ("cloudpickle", "pluggy")
CORE_PACKAGES = ("spmd",)
GLIBC_MINOR = 36  # Debian bookworm, the base of python:3.11-slim and of bootstrapped images


@dataclass(frozen=True)
class ImageSpec:
    """What goes into a task image."""

    base_image: str | None
    requirements: tuple[str, ...] = ()
    runtime_requirements: tuple[str, ...] = ()
    runtime_packages: tuple[str, ...] = ()
    platform: str | None = None  # "linux/amd64", "linux/arm64"; None: the engine's own


@dataclass(frozen=True)
class TaskImage:
    """A published task image: its reference for the queue and whether this call built it."""

    reference: str
    tag: str
    built: bool


def pinned(names: tuple[str, ...]) -> tuple[str, ...]:
    """Requirements pinned to the versions installed here, so client and worker agree."""
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return tuple(pins)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImageError(f"package {name!r} is needed in the task image but cannot be found here")
    return Path(list(spec.submodule_search_locations)[0])


def _source_files(name: str) -> list[Path]:
    root = _package_dir(name)
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo"))


def content_tag(spec: ImageSpec, base_id: str) -> str:
    """The content hash naming the image: equal inputs, equal tag."""
    digest = hashlib.sha256()
    digest.update(json.dumps({
        "base": base_id,
        "python": baseimage.CLIENT_PYTHON,
        "requirements": sorted(spec.requirements),
        "runtime": sorted(spec.runtime_requirements),
        "glibc": GLIBC_MINOR,
        **({"platform": spec.platform} if spec.platform else {}),
    }, sort_keys=True).encode())
    for name in sorted(spec.runtime_packages):
        root = _package_dir(name)
        for path in _source_files(name):
            digest.update(f"{name}/{path.relative_to(root)}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def identify(spec: ImageSpec) -> tuple[str, ImageSpec, str]:
    """(base image, spec for its resolved platform, content tag); PlatformError when the
    engine cannot build for that platform."""
    base = baseimage.resolve(spec.base_image)
    spec = replace(spec, platform=platforms.normalize(spec.platform or platforms.engine_platform()))
    platforms.check(base, spec.platform)
    return base, spec, content_tag(spec, docker_engine.client().images.get(base).id)


def ensure(spec: ImageSpec, registry: ImageRegistry) -> TaskImage:
    """The task image for spec in registry: found by its tag, or built and published."""
    base, spec, tag = identify(spec)
    if registry.exists(tag):
        log.debug("task image %s is already there", tag)
        return TaskImage(registry.reference(tag), tag, built=False)
    baseimage.check_python(base)
    local = f"{LOCAL_REPOSITORY}:{tag}"
    if not docker_engine.image_exists(local):
        build(spec, base, local)
    return TaskImage(registry.publish(local, tag), tag, built=True)


def _platform() -> str:
    arch = docker_engine.client().info().get("Architecture", "x86_64")
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(arch, arch)


def download_wheels(requirements: tuple[str, ...], dest: Path, arch: str | None = None) -> None:
    """Resolve requirements into wheels for the image's platform; RequirementError naming the bad one."""
    arch = arch or _platform()
    platforms = [f"manylinux_2_{v}_{arch}" for v in range(GLIBC_MINOR, 16, -1)]
    platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}", f"linux_{arch}"]
    version = baseimage.CLIENT_PYTHON
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--dest", str(dest), "--python-version", version,
           "--implementation", "cp", "--abi", f"cp{version.replace('.', '')}", "--abi", "abi3",
           "--abi", "none"]
    for platform in platforms:
        cmd += ["--platform", platform]
    cmd += [*requirements, "pip"]
    log.info("resolving requirements for the image: %s", ", ".join(requirements) or "(none)")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        match = re.search(r"No matching distribution found for (\S+)", result.stderr)
        bad = match.group(1) if match else None
        what = f"requirement {bad!r}" if bad else "the requirements"
        raise RequirementError(
            f"{what} cannot be resolved to a wheel for Python {version} on linux/{arch}: "
            f"{' '.join(errors) or result.stderr.strip()[-500:]}. Check the name and version, "
            "or pick a release that publishes wheels", requirement=bad)


DOCKERFILE = """\
FROM {base}
COPY wheels /tmp/spmd-wheels
RUN export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \\
 && python3 "$(ls /tmp/spmd-wheels/pip-*.whl | head -n 1)/pip" install --no-index --no-cache-dir \\
      --find-links /tmp/spmd-wheels -r /tmp/spmd-wheels/requirements.txt \\
 && rm -rf /tmp/spmd-wheels
COPY runtime /opt/spmd
ENV PYTHONPATH=/opt/spmd PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
WORKDIR /tmp
CMD ["python3", "-m", "spmd.worker"]
"""


def build(spec: ImageSpec, base: str, local_tag: str) -> None:
    """Build the image under local_tag, with no network during the build."""
    requirements = tuple(spec.requirements) + tuple(spec.runtime_requirements)
    with tempfile.TemporaryDirectory(prefix="spmd-build-") as context:
        root = Path(context)
        (root / "wheels").mkdir()
        download_wheels(requirements, root / "wheels",
                        platforms.machine(spec.platform) if spec.platform else None)
        (root / "wheels" / "requirements.txt").write_text("\n".join(requirements) + "\n")
        for name in spec.runtime_packages:
            shutil.copytree(_package_dir(name), root / "runtime" / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (root / "Dockerfile").write_text(DOCKERFILE.format(base=base))
        log.info("building task image %s (requirements: %s)", local_tag,
                    ", ".join(spec.requirements) or "none")
        from docker.errors import APIError, BuildError
        try:
            docker_engine.client().images.build(
                path=context, tag=local_tag, rm=True, forcerm=True, pull=False,
                network_mode="none", labels={"spmd.managed": "1"}, platform=spec.platform)
        except BuildError as exc:
            lines = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
            raise ImageError(f"building the task image failed: {exc}\n{lines[-2000:]}") from exc
        except APIError as exc:
            raise ImageError(f"building the task image failed: {exc}") from exc
