"""Task images: built once per content, on the client, with the Docker SDK, for every backend.

The tag is a hash of everything that goes into the image: the base image's id, the
platform (CPU) it is built for, the Python version, the user's requirements, the worker's
runtime requirements and the source of the packages copied in. Every backend gets the same
image for the same Knot (``spmd.plugins.task_runtime``). The function is *not* in the
image; it travels through the store, so changing it never rebuilds anything.

Requirements are resolved on the client into a wheelhouse (``pip download`` for the
image's platform and Python) and installed with ``--no-index`` while the build runs
with no network, so an air-gapped engine builds the same image. System (Debian) packages,
when asked for, go into a layer below it (``apt.ensure_layer``), the one step with network.
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

from . import apt, base as baseimage, platforms
from .. import docker_engine
from ..errors import ImageError, RequirementError
from ..image_registry import ImageRegistry

log = logging.getLogger("spmd")

LOCAL_REPOSITORY = "spmd-task"
CORE_RUNTIME = ("cloudpickle", "fsspec", "pluggy")
CORE_PACKAGES = ("spmd",)
GLIBC_MINOR = 36  # Debian bookworm, the base of python:3.11-slim and of bootstrapped images


@dataclass(frozen=True)
class ImageSpec:
    """What goes into a task image."""

    base_image: str | None
    requirements: tuple[str, ...] = ()
    runtime_requirements: tuple[str, ...] = ()
    runtime_packages: tuple[str, ...] = ()
    system_packages: tuple[str, ...] = ()
    debian_mirror: str | None = None  # where system packages come from; not part of the tag
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
    content = {
        "base": base_id,
        "python": baseimage.CLIENT_PYTHON,
        "requirements": sorted(spec.requirements),
        "runtime": sorted(spec.runtime_requirements),
        "glibc": GLIBC_MINOR,
    }
    if spec.system_packages:  # only when present, so images without any keep their tags
        content["system_packages"] = sorted(spec.system_packages)
    if spec.platform:
        content["platform"] = spec.platform
    digest.update(json.dumps(content, sort_keys=True).encode())
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
        if spec.system_packages:
            base_id = docker_engine.client().images.get(base).id
            base = apt.ensure_layer(base, base_id, spec.system_packages,
                                    apt.debian_mirror(spec.debian_mirror))
        build(spec, base, local)
    return TaskImage(registry.publish(local, tag), tag, built=True)


def _platform() -> str:
    arch = docker_engine.client().info().get("Architecture", "x86_64")
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(arch, arch)


def download_wheels(requirements: tuple[str, ...], dest: Path,
                    python: str = baseimage.CLIENT_PYTHON, arch: str | None = None) -> None:
    """Resolve requirements into wheels for the image's platform; RequirementError naming the bad one."""
    arch = arch or _platform()
    wheel_platforms = [f"manylinux_2_{v}_{arch}" for v in range(GLIBC_MINOR, 16, -1)]
    wheel_platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}", f"linux_{arch}"]
    version = python
    # -I: a "pip" module planted in the working folder is not what runs
    cmd = [sys.executable, "-I", "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--dest", str(dest), "--python-version", version,
           "--implementation", "cp", "--abi", f"cp{version.replace('.', '')}", "--abi", "abi3",
           "--abi", "none"]
    for platform in wheel_platforms:
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


# spmd is compiled in the image so that no container compiles it; best effort, since a Command
# image's older python3 may not parse every module (those compile, or fail, on import as before).
DOCKERFILE = """\
FROM {base}
COPY wheels /tmp/spmd-wheels
RUN export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \\
 && python3 "$(ls /tmp/spmd-wheels/pip-*.whl | head -n 1)/pip" install --no-index --no-cache-dir \\
      --find-links /tmp/spmd-wheels -r /tmp/spmd-wheels/requirements.txt \\
 && rm -rf /tmp/spmd-wheels
COPY runtime /opt/spmd
RUN python3 -m compileall -q --invalidation-mode unchecked-hash /opt/spmd >/dev/null 2>&1 || true
ENV PYTHONPATH=/opt/spmd PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
WORKDIR /tmp
CMD ["python3", "-m", "spmd.task.worker"]
"""


def build(spec: ImageSpec, base: str, local_tag: str, *, python: str = baseimage.CLIENT_PYTHON,
          dockerfile: str = DOCKERFILE) -> None:
    """Build the image under local_tag, with no network during the build."""
    requirements = tuple(spec.requirements) + tuple(spec.runtime_requirements)
    with tempfile.TemporaryDirectory(prefix="spmd-build-") as context:
        root = Path(context)
        (root / "wheels").mkdir()
        download_wheels(requirements, root / "wheels", python,
                        platforms.machine(spec.platform) if spec.platform else None)
        (root / "wheels" / "requirements.txt").write_text("\n".join(requirements) + "\n")
        for name in spec.runtime_packages:
            shutil.copytree(_package_dir(name), root / "runtime" / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (root / "Dockerfile").write_text(dockerfile.format(base=base))
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


# -- Command images: the user's own image with spmd's runtime on top ----------------------

COMMAND_DOCKERFILE = DOCKERFILE.replace("FROM {base}\n", "FROM {base}\nUSER root\n").replace(
    "CMD [", 'ENTRYPOINT []\nCMD [')
PACKAGE_MANAGERS = {
    "apt-get": "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
               "--no-install-recommends python3 && rm -rf /var/lib/apt/lists/*",
    "apk": "apk add --no-cache python3",
    "dnf": "dnf install -y python3 && dnf clean all",
    "microdnf": "microdnf install -y python3 && microdnf clean all",
    "yum": "yum install -y python3 && yum clean all",
}
PYTHON_STAGE = "spmd-python"
_FIND_PM = ("for pm in " + " ".join(PACKAGE_MANAGERS) + "; do if command -v $pm >/dev/null 2>&1; "
            "then echo $pm; exit 0; fi; done; exit 3")


def _probe(image_id: str, argv: list[str]) -> tuple[int, str] | None:
    """Run argv in the image (no entrypoint, no network): exit code and output, or None when it
    cannot even start (no such program)."""
    from docker.errors import APIError
    client = docker_engine.client()
    container = client.containers.create(image_id, argv, entrypoint=[], network_mode="none",
                                         labels={"spmd.probe": "1"})
    try:
        try:
            container.start()
        except APIError:
            return None
        code = container.wait().get("StatusCode", 1)
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def _python_of(image_id: str) -> str | None:
    found = _probe(image_id, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    if not found or found[0] != 0:
        return None
    version = found[1].strip().splitlines()[-1]
    return version if re.fullmatch(r"3\.\d+", version) else None


def _user_image(reference: str) -> str:
    """The id of the user's image: present in the engine, or pulled."""
    from docker.errors import DockerException, ImageNotFound
    client = docker_engine.client()
    try:
        return client.images.get(reference).id
    except ImageNotFound:
        pass
    try:
        log.info("pulling %s", reference)
        return client.images.pull(reference).id
    except DockerException as exc:
        raise ImageError(f"Command image {reference!r} is not in the local engine and cannot be "
                         f"pulled ({exc}); build it or `docker pull` it first, or fix the name") from exc


def _add_python(reference: str, image_id: str) -> str:
    """A stage of the user's image with python3 from its package manager; CommandImageError
    saying what to do when that cannot be."""
    from ..errors import CommandImageError
    stage = f"{PYTHON_STAGE}:{image_id.split(':')[-1][:20]}"
    if docker_engine.image_exists(stage):
        return stage
    found = _probe(image_id, ["sh", "-c", _FIND_PM])
    advice = (f"Use an image that has python3 (any 3.x), or build one FROM {reference} that "
              "installs it (e.g. RUN apt-get install -y python3), or copy your tool into such an image")
    if found is None:
        raise CommandImageError(f"image {reference!r} has no python3 and no shell (sh) to install "
                                f"one with, so spmd cannot add its runtime. {advice}", image=reference)
    code, output = found
    manager = output.strip().splitlines()[-1] if code == 0 and output.strip() else ""
    if manager not in PACKAGE_MANAGERS:
        raise CommandImageError(
            f"image {reference!r} has no python3 and none of the package managers spmd knows "
            f"({', '.join(PACKAGE_MANAGERS)}), so spmd cannot install one. {advice}", image=reference)
    log.info("image %s has no python3; installing one with %s", reference, manager)
    with tempfile.TemporaryDirectory(prefix="spmd-python-") as context:
        Path(context, "Dockerfile").write_text(
            f"FROM {image_id}\nUSER root\nRUN {PACKAGE_MANAGERS[manager]}\n")
        from docker.errors import APIError, BuildError
        try:
            docker_engine.client().images.build(path=context, tag=stage, rm=True, forcerm=True,
                                                pull=False, labels={"spmd.managed": "1"})
        except (BuildError, APIError) as exc:
            lines = "".join(str(c.get("stream", c.get("error", "")))
                            for c in getattr(exc, "build_log", ()))
            raise CommandImageError(
                f"installing python3 into {reference!r} with {manager} failed: {exc}\n"
                f"{lines[-1500:]}\n{advice}", image=reference) from exc
    return stage


def ensure_for_command(reference: str, spec: ImageSpec, registry: ImageRegistry) -> TaskImage:
    """The task image of a Command: the user's image plus spmd's runtime, on the image's own
    python3 (any 3.x; wheels are fetched for that version) or on one its package manager adds.

    Tagged by content (the user's image id and the runtime), so a second map builds nothing.
    """
    image_id = _user_image(reference)
    tag = content_tag(spec, f"command:{image_id}")
    if registry.exists(tag):
        return TaskImage(registry.reference(tag), tag, built=False)
    local = f"{LOCAL_REPOSITORY}:{tag}"
    if not docker_engine.image_exists(local):
        base, python = image_id, _python_of(image_id)
        if python is None:
            base = _add_python(reference, image_id)
            python = _python_of(base)
            if python is None:
                from ..errors import CommandImageError
                raise CommandImageError(f"python3 was installed into {reference!r} but does not "
                                        "run; use an image that has python3", image=reference)
        log.info("Command image %s has Python %s", reference, python)
        build(spec, base, local, python=python, dockerfile=COMMAND_DOCKERFILE)
    return TaskImage(registry.publish(local, tag), tag, built=True)
