"""``spmd doctor``'s checks of the Slurm backend: the commands and the controller, the
partition and its nodes, MaxArraySize, shared_dir (writable, private) and the interpreter."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Iterator

from spmd.checks import Check, probe

from . import slurm

COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")


def checks(backend) -> Iterator[Check]:
    settings = backend.settings
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    yield Check("commands", not missing,
                f"missing: {', '.join(missing)}" if missing else ", ".join(COMMANDS) + " on PATH",
                "run spmd on a login node of the cluster, or install slurm-client")
    if missing:
        return
    controller = probe("controller", lambda: _ping(), "is slurmctld up? ask the cluster's admins")
    yield controller
    if controller.ok:
        partition = settings.get("partition")
        yield probe("partition", lambda: _partition(partition),
                    "set partition to one that `sinfo -s` lists, or leave it out for the default")
        yield probe("MaxArraySize", lambda: f"{slurm.max_array_size()} (arrays are split to fit)",
                    "scontrol show config must answer")
    shared = settings.get("shared_dir")
    yield probe("shared_dir", lambda: _shared_dir(shared),
                "set shared_dir to a folder on the cluster's shared filesystem (scratch) that "
                "only you can read: mkdir -p DIR && chmod 700 DIR")
    python = settings.get("python")
    if python:
        yield probe("python", lambda: _python(python),
                    "set python to an interpreter on the shared filesystem that every node sees")


def _ping() -> str:
    said = slurm.run(["scontrol", "ping"]).strip().splitlines()
    return said[0] if said else "answers"


def _partition(partition: str | None) -> str:
    nodes = slurm.nodes(partition)
    if not nodes:
        raise LookupError(f"Slurm lists no nodes in partition {partition or '(default)'}")
    cpus, memory = max(n.cpus for n in nodes), max(n.memory for n in nodes)
    return (f"{partition or '(default)'}: {len(nodes)} nodes, the largest {cpus} CPUs and "
            f"{memory / 2**30:.1f} GiB")


def _shared_dir(shared: str | None) -> str:
    if not shared:
        raise LookupError("shared_dir is not set")
    path = Path(shared).expanduser()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(f"{path} is mode {mode:o}: other users can reach the jobs' data; "
                              f"chmod 700 {path}")
    if not os.access(path, os.W_OK):
        raise PermissionError(f"{path} is not writable by you")
    return f"{path}: yours alone (mode {mode:o}), writable"


def _python(python: str) -> str:
    out = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                         capture_output=True, text=True, timeout=30, check=True)
    return f"{python}: Python {out.stdout.strip()}"
