"""Time from a fault injected from outside to the error on the futures it affects (local Docker).

    python benchmarks/fault_latency.py

Cases: a result file truncated after the job (then attach), a scheduler that dies at every
start (then attach), a store remounted read-only mid-job (root only: a bind mount). The
bounds that are set by design, not measured here: the watcher's budget (10 failed checks over
at least 120 s, spmd.client.job.WATCH_*) and AWS's forgotten job (120 s, spmd_aws.queue.FORGOTTEN_AFTER).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker.errors

import spmd
from spmd import docker_engine, layout


def square(x):
    return x * x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def damaged(config: dict) -> float:
    job = spmd.Knot(square, config=config).map(range(4), chunksize=1)
    job.results(timeout=600)
    path = Path(config["store_dir"]) / "spmd" / layout.output_key(job.id, 2)
    with open(path, "r+b") as handle:
        handle.truncate(10)
    start = time.monotonic()
    again = spmd.attach(job.id, config=config)
    again.futures[2].exception(timeout=600)
    return time.monotonic() - start


def dies_at_start(config: dict) -> float:
    job = spmd.Knot(square, config=config).map(range(2), chunksize=1)
    job.results(timeout=600)
    while job.backend.queue.scheduler_alive(job.id):
        time.sleep(0.1)
    store, queue = job.backend.store, f"jobs/{job.id}/queue/"
    store.delete(queue + "state.json")
    store.delete_prefix(f"jobs/{job.id}/output/")
    spec = store.get_json(queue + "spec.json")
    spec["spec"]["resources"] = None
    store.put_json(queue + "spec.json", spec)
    start = time.monotonic()
    spmd.attach(job.id, config=config).futures[0].exception(timeout=600)
    return time.monotonic() - start


def read_only(root: Path) -> float:
    real, mounted = root / "real", root / "store"
    real.mkdir()
    mounted.mkdir()
    subprocess.run(["mount", "--bind", str(real), str(mounted)], check=True)
    try:
        config = {"store_dir": str(mounted), "max_vcpus": 2}
        job = spmd.Knot(nap, config=config).map([0.1, 60], chunksize=1)
        job.futures[0].result(timeout=600)
        time.sleep(2)
        start = time.monotonic()
        os.kill(job.backend.queue._state(job.id)["pid"], signal.SIGKILL)
        for container in docker_engine.client().containers.list(filters={"label": f"spmd.job={job.id}"}):
            try:
                container.remove(force=True)
            except docker.errors.APIError:  # already going: removal in progress, or gone
                pass
        while subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)],
                             capture_output=True).returncode:
            time.sleep(0.1)
        job.futures[1].exception(timeout=600)
        return time.monotonic() - start
    finally:
        subprocess.run(["umount", "-l", str(mounted)], check=False)


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        rows = [("damaged result, attach to error on its item", damaged(
                    {"store_dir": str(root / "a"), "max_vcpus": 2})),
                ("scheduler dies at every start, attach to error", dies_at_start(
                    {"store_dir": str(root / "b"), "max_vcpus": 2}))]
        if os.geteuid() == 0:
            (root / "c").mkdir()
            rows.append(("store read-only mid-job (scheduler and containers gone), to error",
                         read_only(root / "c")))
        else:
            print("not root: the read-only case needs a bind mount", file=sys.stderr)
    for name, seconds in rows:
        print(f"{name:70s} {seconds:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
