"""The Docker engine restarting mid-job loses no work: interrupted tasks (told to stop by the
engine's SIGTERM) run again, counted as attempts lost to the infrastructure (their own
budget, not ``retries``).

The engine restarted is a PRIVATE dockerd this test starts (own socket, data and exec roots,
no bridge, no iptables, its own network namespace), with the task image loaded into it;
never the shared one.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

import spmd
from spmd import docker_engine
from spmd.testing import wait_for

pytestmark = pytest.mark.docker


def nap(seconds):
    import time
    print("napping", flush=True)
    time.sleep(seconds)
    return seconds


class PrivateEngine:
    """A dockerd of this test's own under a short /tmp folder (a socket path is short)."""

    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="spmd-dockerd-", dir="/tmp"))
        self.socket = self.base / "d.sock"
        self.url = f"unix://{self.socket}"
        self.process = None

    def start(self) -> None:
        log = open(self.base / "dockerd.log", "ab")
        # In a network namespace of its own: a dockerd with --bridge=none deletes the host's
        # docker0 interface at start, which the shared engine's containers need.
        self.process = subprocess.Popen(
            ["unshare", "--net", "dockerd", f"--host={self.url}", f"--data-root={self.base}/data",
             f"--exec-root={self.base}/exec", f"--pidfile={self.base}/dockerd.pid",
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        import docker
        wait_for(lambda: self.process.poll() is None and _answers(docker, self.url),
                 what="the private dockerd to answer", seconds=120)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)

    def remove(self) -> None:
        self.stop()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.base))]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def _answers(docker, url) -> bool:
    try:
        return docker.DockerClient(base_url=url, timeout=5).ping()
    except Exception:
        return False


@pytest.fixture
def private_engine(local, engine, monkeypatch):
    import docker
    reference = spmd.Knot(nap, config=local).ensure_image().reference  # built on the shared engine
    private = PrivateEngine()
    try:
        private.start()
        client = docker.DockerClient(base_url=private.url, timeout=300)
        from spmd.images.base import resolve
        for image in (resolve(None), reference):  # Knot looks for its base image too
            client.images.load(b"".join(engine.images.get(image).save(named=True)))
        monkeypatch.setenv("DOCKER_HOST", private.url)
        docker_engine.client.cache_clear()
        yield private
    finally:
        docker_engine.client.cache_clear()
        private.remove()


def test_engine_restart_mid_job_reruns_the_interrupted_tasks(local, private_engine):
    job = spmd.Knot(nap, retries=0, config=local).map([6, 6], chunksize=1)
    run_logs = Path(local["store_dir"], "spmd", "jobs", job.id, "queue", "run")
    wait_for(lambda: len([p for p in run_logs.glob("*.log") if b"napping" in p.read_bytes()]) == 2,
             what="both tasks napping", seconds=120)
    private_engine.stop()  # takes the job's containers down with it
    private_engine.start()
    assert job.results(timeout=300) == [6, 6]
    assert [job.provenance(i)["attempt"] for i in range(2)] == [2, 2]
    state = json.loads((run_logs.parent / "state.json").read_text())
    assert state["infra_lost"] == {"0": 1, "1": 1}, state  # not charged to retries=0
    log = job.logs(0)
    # the stopping engine sent each container SIGTERM: the task was told to stop and requeued
    assert "--- spmd: attempt 2 ---" in log and "requeued (stop signal SIGTERM)" in log, log
