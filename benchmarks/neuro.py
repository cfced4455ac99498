"""The DIPY reference pipeline (examples/dipy_pipeline.py) on spmd's local backend next to the
same function in ProcessPoolExecutor(2), and the bytes a second map over the same files uploads.

    .venv/bin/python benchmarks/neuro.py --subjects 8 24 --repeat 2

Per size: the subjects are simulated first (not timed) and the task image is built before
timing (``knot.ensure_image()``). spmd: a fresh store per run, the example's resources (1 vCPU,
2 GiB per task; the local backend runs as many at once as the machine has cores), timed from
``map()`` to the last result, data references uploaded inside the timing on the first map.
Then a second map over the same folders, also timed, whose ``job.uploads.uploaded_bytes``
should be 0. The pool is created inside its timing. Every run's results are checked against
the pool's. The 1-minute load average is printed before each measurement: on a shared
machine it says how much the numbers are worth.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import dipy_pipeline  # noqa: E402
import spmd  # noqa: E402
from neuro import pipeline, simulate  # noqa: E402


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def run_pool(folders: list[Path], workers: int) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(pipeline.process_subject, folders))
    return time.perf_counter() - started, results


def run_spmd(knot: spmd.Knot, folders: list[Path],
             chunksize: int | None) -> tuple[float, list[dict], spmd.Job]:
    started = time.perf_counter()
    job = knot.map([spmd.File(folder) for folder in folders], chunksize=chunksize)
    results = job.results(timeout=3600)
    return time.perf_counter() - started, results, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunksize", type=int, default=None,
                        help="items per spmd task (default: the map's own, as in the example)")
    options = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; spmd chunksize "
          f"{options.chunksize or 'default'}")
    # ignore_cleanup_errors: the local queue may still write a job's state file at exit
    with tempfile.TemporaryDirectory(prefix="spmd-bench-neuro-", ignore_cleanup_errors=True) as scratch:
        folders_all = simulate.write_subjects(Path(scratch) / "subjects", max(options.subjects))
        built = dipy_pipeline.knot("local", config={"store_dir": str(Path(scratch) / "s")}).ensure_image()
        print(f"task image {built.reference} (built now: {built.built})")
        for n in options.subjects:
            folders = folders_all[:n]
            for run in range(1, options.repeat + 1):
                # a fresh store: the first map uploads every subject, the second none
                store = Path(scratch) / f"store-{n}-{run}"
                knot = dipy_pipeline.knot("local", config={"store_dir": str(store)})
                before = load()
                pool_s, want = run_pool(folders, options.workers)
                print(f"{n:3d} subjects, run {run}: ProcessPoolExecutor({options.workers}) "
                      f"{pool_s:7.1f}s  [{before}]")
                for attempt in ("first map", "second map"):
                    before = load()
                    spmd_s, got, job = run_spmd(knot, folders, options.chunksize)
                    problems = dipy_pipeline.mismatches(got, want)
                    sent = job.uploads
                    print(f"{n:3d} subjects, run {run}: spmd local {attempt:10s} {spmd_s:7.1f}s "
                          f"= {spmd_s / pool_s:.2f} x the pool; uploaded {sent.uploaded_bytes} of "
                          f"{sent.bytes} bytes referenced; "
                          f"{'results equal' if not problems else problems}  [{before}]")


if __name__ == "__main__":
    main()
