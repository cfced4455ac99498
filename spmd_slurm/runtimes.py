"""Container runtimes a Slurm task can run the task image under: one small class each.

    runtime       where the image lives                  what a task runs                 limits
    docker        the node's Docker daemon               docker run ... spmd-task:<tag>    docker's
    charliecloud  <shared_dir>/images/<tag>/ (a folder)   ch-run <folder> -- python3 ...    the job's cgroup

Every runtime runs the same content-hashed ``spmd-task:<tag>`` image that local and AWS run
(built on the client with Docker, as for every backend). A runtime says which commands it
needs and which Debian package has them (``check``, at ``map()``), makes the image usable on
the nodes (``publish``: nothing for Docker; a conversion for Charliecloud) and renders the
shell words of one attempt (``launch``). Apptainer would be one more class: docs/slurm.md.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import ClassVar

from spmd.batch_queue import ArraySpec
from spmd.errors import ConfigError, ImageError
from spmd.protocol import SECRETS_DIR

log = logging.getLogger("spmd")

#: variables a task container receives from the batch script, besides the Knot's env
TASK_VARIABLES = ("AWS_BATCH_JOB_ARRAY_INDEX", "SPMD_TASK_OFFSET", "SPMD_ATTEMPT",
                  "PYTHONUNBUFFERED", "SPMD_IMAGE")
#: what Slurm's gres plugin sets for a task given GPUs (which ones it was given), passed on
#: into the container when the task asks for GPUs
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "SLURM_JOB_GPUS",
                 "SLURM_GPUS_ON_NODE")
READY = ".spmd-ready"
SCRATCH = "/var/tmp"  # where a Charliecloud task finds its scratch folder (its TMPDIR)


class Shell(str):
    """A word that is shell text already (it names the script's variables): not quoted."""


def _quote(words: list[str]) -> str:
    """Shell words, each quoted unless it is ``Shell`` text."""
    return " ".join(w if isinstance(w, Shell) else shlex.quote(w) for w in words)


class Runtime:
    """How a task runs the task image on a node; subclasses fill in the three parts."""

    name: ClassVar[str] = ""
    commands: ClassVar[tuple[str, ...]] = ()  # needed where map() runs and on the nodes
    package: ClassVar[str] = ""  # the Debian package that has them

    def check(self) -> None:
        """ConfigError naming the package when a command this runtime needs is missing."""
        missing = [c for c in self.commands if shutil.which(c) is None]
        if missing:
            raise ConfigError(
                f"runtime = {self.name!r} needs {', '.join(missing)}, which is not on PATH: "
                f"install {self.package} (Debian: apt-get install {self.package}) on the login "
                "and compute nodes, or choose another runtime", key="runtime")

    def exists(self, reference: str) -> bool:
        """Whether the image is ready for the nodes (by default: in the node's own engine)."""
        from spmd import docker_engine
        return docker_engine.image_exists(reference)

    def publish(self, reference: str) -> None:
        """Make the image (already in the client's Docker engine) usable by the nodes."""

    def prepare(self, spec: ArraySpec, volumes: list[str]) -> None:
        """Client-side work before an array is submitted (e.g. mount points in the image)."""

    def launch(self, spec: ArraySpec, volumes: list[str], command: list[str]) -> str:
        """The shell words of one attempt: command run in spec.image, volumes at their paths."""
        raise NotImplementedError

    def variables(self, spec: ArraySpec) -> list[str]:
        """The names of the variables a task receives (never the submitter's others)."""
        return sorted({*spec.env, *TASK_VARIABLES,
                       *(GPU_VARIABLES if spec.resources.gpus else ())})

    def before(self, spec: ArraySpec) -> str:
        """Shell run before each attempt."""
        return ":"

    def after(self) -> str:
        """Shell run after each attempt, with its exit status in $code."""
        return ":"


class Docker(Runtime):
    """``docker run`` per task. dockerd is outside the job's cgroup, so the job's memory and
    CPUs are given to docker run too; the container sees only the job's own folder."""

    name = "docker"
    commands = ("docker",)
    package = "docker.io"

    def launch(self, spec: ArraySpec, volumes: list[str], command: list[str]) -> str:
        res = spec.resources
        words = ["docker", "run", "--name", Shell('"$container"'), "--init",
                 # dockerd is outside the job's cgroup: the container gets the same limits
                 f"--memory={res.memory}", f"--memory-swap={res.memory}", f"--cpus={res.vcpus:g}",
                 "--user", f"{os.getuid()}:{os.getgid()}", "--workdir", "/tmp",
                 "--label", "spmd.managed=1", "--label", f"spmd.job={spec.job_id}"]
        if spec.network:  # the host's network only when the Knot asks for network
            words.append("--network=host")
        secrets = spec.env.get(SECRETS_DIR)
        for folder in volumes:  # the job's secrets read-only
            words += ["--volume", f"{folder}:{folder}" + (":ro" if folder == secrets else "")]
        for name in self.variables(spec):
            words += ["--env", name]
        return _quote(words + [spec.image] + command)

    def before(self, spec: ArraySpec) -> str:
        # named after the spmd job, task and attempt: unique on the engine, and only ever ours
        job = re.sub(r"[^A-Za-z0-9_.-]", "-", spec.job_id)
        return f'container="spmd-{job}-$task-$attempt"; docker rm -f "$container" >/dev/null 2>&1'

    def after(self) -> str:
        # dockerd, not the kernel's cgroup for this job, killed the container: say so as the code
        return ('[ "$(docker inspect --format "{{.State.OOMKilled}}" "$container" 2>/dev/null)" '
                '= true ] && code=137; docker rm -f "$container" >/dev/null 2>&1; container=""')


class Charliecloud(Runtime):
    """``ch-run`` of the image converted to a folder under ``shared_dir/images/``: an
    unprivileged process of the job, so Slurm's cgroup limits hold as they are.

    The conversion (``convert``) is made once per tag, by the client, under a lock
    every client respects, into a temporary name renamed into place: a node never sees half
    an image. ``ch-run`` gets a clean environment (``--unset-env='*'``), then the image's own
    (``--set-env``: PYTHONPATH, PATH, HOME) and the task's variables from a private file; the
    task's scratch folder is its ``/var/tmp`` and TMPDIR, removed by the batch script however
    the task ends.
    """

    name = "charliecloud"
    commands = ("ch-run", "ch-convert")
    package = "charliecloud-runtime and charliecloud-builders"

    def __init__(self, images_dir: Path):
        self.images_dir = images_dir

    def folder(self, reference: str) -> Path:
        """Where the converted image of reference lives: ``images/<tag>``."""
        return self.images_dir / reference.rpartition(":")[2]

    def exists(self, reference: str) -> bool:
        return (self.folder(reference) / READY).exists()

    def publish(self, reference: str) -> None:
        """Convert the engine's image into ``images/<tag>`` unless it is there already."""
        import fasteners
        final = self.folder(reference)
        self.images_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with fasteners.InterProcessLock(str(self.images_dir / f".{final.name}.lock")):
            if self.exists(reference):
                return  # another map converted it while this one waited
            building = self.images_dir / f".{final.name}.{os.getpid()}.partial"
            shutil.rmtree(building, ignore_errors=True)
            log.info("converting %s for Charliecloud into %s", reference, final)
            started = time.monotonic()
            try:
                convert(reference, building)
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                raise
            (building / READY).write_text(f"{reference}\n")
            shutil.rmtree(final, ignore_errors=True)  # a folder left without its mark
            os.rename(building, final)
            log.info("converted %s in %.1fs", reference, time.monotonic() - started)

    def prepare(self, spec: ArraySpec, volumes: list[str]) -> None:
        """Convert the image if needed; make the mount points ch-run binds the shared folders on
        (an image is mounted read-only, so they must exist in it beforehand)."""
        for name, value in spec.env.items():
            if "\n" in value:
                raise ConfigError(f"env {name!r} holds a line break, which ch-run's environment "
                                  "file cannot carry; pass it another way (a file)", key="env")
        if not self.exists(spec.image):
            self.publish(spec.image)
        root = self.folder(spec.image)
        for folder in [SCRATCH, *volumes]:
            (root / folder.lstrip("/")).mkdir(parents=True, exist_ok=True)

    def launch(self, spec: ArraySpec, volumes: list[str], command: list[str]) -> str:
        # --private-tmp: a tmpfs /tmp, not the host's (nor $TMPDIR, ch-run's default for it)
        words = ["ch-run", "--private-tmp", "--unset-env=*", "--set-env", "--env-no-expand",
                 Shell('--set-env="$envfile"'), Shell('--bind="$work":/var/tmp'), "--cd=/var/tmp"]
        for folder in volumes:
            words.append(f"--bind={folder}")
        return _quote(words + [str(self.folder(spec.image)), "--"] + command)

    def before(self, spec: ArraySpec) -> str:
        # the task's variables, in a file only this user reads (not on ch-run's command line,
        # which every user of the node sees); the scratch folder is the container's /var/tmp
        lines = " ".join(f'"{name}=${{{name}-}}"' for name in self.variables(spec))
        return (': "${USER:=$(id -un)}"; export USER; '  # ch-run refuses to start without it
                f"(umask 077; printf '%s\\n' {lines} TMPDIR=/var/tmp > \"$envfile\")")


def convert(reference: str, folder: Path) -> None:
    """The image's files into folder, as ``ch-convert -i docker`` makes them, without its
    needless gzip round trip (a quarter of the time): the engine exports the flattened
    filesystem to a tar, ``ch-convert -i tar`` unpacks it (skipping /dev, adding the mount
    points ch-run needs) and the image's environment goes to ``/ch/environment``."""
    from spmd import docker_engine
    engine = docker_engine.client()
    tar = folder.with_suffix(".tar")
    container = engine.containers.create(reference, "/bin/true")
    try:
        with open(tar, "wb") as out:
            for chunk in container.export():
                out.write(chunk)
        result = subprocess.run(["ch-convert", "--no-clobber", "-i", "tar", "-o", "dir", str(tar),
                                 str(folder)], capture_output=True, text=True)
        if result.returncode != 0:
            raise ImageError(f"ch-convert could not unpack {reference} for Charliecloud (exit "
                             f"{result.returncode}): {result.stderr.strip()[-800:]}")
    finally:
        container.remove(force=True)
        tar.unlink(missing_ok=True)
    env = engine.images.get(reference).attrs.get("Config", {}).get("Env") or []
    (folder / "ch").mkdir(exist_ok=True)
    (folder / "ch" / "environment").write_text("".join(f"{line}\n" for line in env))


def for_settings(runtime: str, shared_dir: Path) -> Runtime | None:
    """The container runtime of a ``runtime`` setting; None for the venv (``python``)."""
    if runtime == "docker":
        return Docker()
    if runtime == "charliecloud":
        return Charliecloud(shared_dir / "images")
    return None
