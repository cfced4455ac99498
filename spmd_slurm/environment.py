"""The Python environment tasks run in when there is no container: a venv on the shared filesystem.

    ImageSpec (requirements, runtime pins, runtime package sources)
      ──> the same content hash that names task images ──> <shared_dir>/envs/<hash>/
      missing ──> built on the client (the login node, which reaches the package index):
                  venv from this Python ──> pip install requirements + runtime pins
                  ──> spmd's runtime packages copied in, on a .pth ──> renamed into place
      present ──> nothing to do

So the environment is in step with the client's requirements by construction: different
requirements or a different spmd make a different hash, hence a different directory.
Compute nodes need no network; they only need the shared filesystem and the same Python
(the venv links to this interpreter, so it must be visible at the same path on the nodes).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from spmd.images import build as image
from spmd.errors import RequirementError

log = logging.getLogger("spmd")

READY = "spmd-ready"


def environment_hash(spec: image.ImageSpec) -> str:
    """The content hash of an environment: that of a task image with this Python as its base."""
    return image.content_tag(spec, base_id=f"venv {sys.version} {sys.platform}")


def python_of(folder: Path) -> Path:
    return folder / "bin" / "python"


def ensure(spec: image.ImageSpec, envs_dir: Path) -> tuple[Path, bool]:
    """The interpreter of the environment for spec under envs_dir, and whether it was built now."""
    folder = envs_dir / environment_hash(spec)
    if (folder / READY).exists():
        return python_of(folder), False
    envs_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=envs_dir))
    try:
        build(spec, building, folder)
        (building / READY).write_text(f"{sys.version}\n")
        try:
            os.rename(building, folder)  # atomic: another client may have won the race
        except OSError:
            if not (folder / READY).exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return python_of(folder), True


def build(spec: image.ImageSpec, folder: Path, final: Path) -> None:
    """A venv in folder with the requirements installed and spmd's runtime packages on its path.

    The venv is made in place and renamed afterwards; venv's scripts name their folder,
    so only ``bin/python`` (a symlink) is used, never the activate scripts or pip's launchers.
    """
    base = getattr(sys, "_base_executable", sys.executable)
    log.info("making the task environment %s (requirements: %s)", folder.name,
             ", ".join(spec.requirements) or "none")
    subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], check=True,
                   capture_output=True)
    requirements = [*spec.requirements, *spec.runtime_requirements]
    if requirements:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python_of(folder)), "install", "--quiet",
             "--disable-pip-version-check", "--no-warn-script-location", *requirements],
            capture_output=True, text=True)
        if result.returncode != 0:
            match = re.search(r"No matching distribution found for (\S+)", result.stderr)
            bad = match.group(1) if match else None
            what = f"requirement {bad!r}" if bad else "the requirements"
            raise RequirementError(f"{what} cannot be installed in the task environment: "
                                   f"{result.stderr.strip()[-600:]}", requirement=bad)
    runtime = folder / "spmd-runtime"
    for name in spec.runtime_packages:
        shutil.copytree(image._package_dir(name), runtime / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    site = next((folder / "lib").glob("python3*/site-packages"))
    # The final path, not the building one: the folder is renamed into place afterwards.
    (site / "spmd-runtime.pth").write_text(f"{final / 'spmd-runtime'}\n")
