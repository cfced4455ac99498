"""A real single-node Slurm for this session: scripts/slurm.sh start, and stop at the end.

The cluster lives in a directory of the session's own (config, state, spool, munge socket
and key, pid files) and listens on its own ports, so a Slurm already on the machine is left
alone. Slurm and munge come from Debian (scripts/setup.sh installs them); without them the
tests fail with the command to run, rather than quietly testing less.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm.sh"
#: the test cluster's MaxArraySize: small, so that a map of a few tasks needs several arrays
MAX_ARRAY_SIZE = 4
#: set for a pytest run inside another's session: the running cluster's folder, and its shared_dir
RUNNING, SHARED_DIR = "SPMD_TEST_SLURM_RUNNING", "SPMD_TEST_SLURM_SHARED_DIR"


def free_port_pair() -> int:
    """A port p with p and p+1 free (slurmctld, slurmd), so a cluster left over by a killed
    session, or the machine's own Slurm, is never in the way."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("", port))
                b.bind(("", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports for the test cluster")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """The cluster's directory, with SLURM_CONF pointing at its config while the session runs."""
    running = os.environ.get(RUNNING)
    if running:  # a session started by another (test_slurm_charliecloud.py's, as root)
        yield Path(running)
        return
    missing = [tool for tool in ("slurmctld", "slurmd", "munged", "sbatch")
               if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run scripts/setup.sh (it installs Debian's "
                    "slurm-wlm and munge)", pytrace=False)
    # Under /tmp itself: munged runs as the munge user, who cannot enter pytest's 0700 folders.
    folder = Path(tempfile.mkdtemp(prefix="spmd-slurm-", dir="/tmp"))
    folder.chmod(0o755)
    port = free_port_pair()
    # job ids of its own too: clusters running at once share cgroup v1's slurm/job_<id> names
    started = subprocess.run([str(SCRIPT), "start", str(folder)], capture_output=True, text=True,
                             env={**os.environ, "SPMD_SLURM_MAX_ARRAY_SIZE": str(MAX_ARRAY_SIZE),
                                  "SPMD_SLURM_PORT": str(port),
                                  "SPMD_SLURM_FIRST_JOB_ID": str(7_000_000 + port % 500 * 100_000)})
    if started.returncode != 0:
        subprocess.run([str(SCRIPT), "stop", str(folder)], capture_output=True)
        pytest.fail(f"scripts/slurm.sh start failed:\n{started.stderr}", pytrace=False)
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "etc" / "slurm.conf")
    try:
        yield folder
    finally:
        subprocess.run([str(SCRIPT), "stop", str(folder)], capture_output=True)
        if os.environ.get("SPMD_SLURM_KEEP_LOGS"):
            shutil.copytree(folder / "log", os.environ["SPMD_SLURM_KEEP_LOGS"], dirs_exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before


@pytest.fixture(scope="session")
def slurm_shared_dir(slurm_cluster, tmp_path_factory) -> str:
    """One shared_dir for the session, so the task environment is made once."""
    return os.environ.get(SHARED_DIR) or str(tmp_path_factory.mktemp("shared"))


@pytest.fixture
def slurm_config(slurm_shared_dir) -> dict:
    # Polling squeue 4 times a second is fine for a one-node test cluster (default: 1 s).
    return {"shared_dir": slurm_shared_dir, "partition": "debug", "poll_interval": 0.25}


@pytest.fixture
def slurm_max_array_size() -> int:
    return MAX_ARRAY_SIZE
