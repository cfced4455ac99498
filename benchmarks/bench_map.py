"""Side-by-side: one map of N small items, by spmd (local Docker) and by its peers, in one run.

    python benchmarks/bench_map.py --items 48

Peers measured on this machine: concurrent.futures' process pool (no containers, the
floor), a hand-written "docker run per item" loop with 2 at a time (what a script around
`docker run` does), and Lithops' localhost backend (processes, its default; installed by
benchmarks/run.sh). Cloudknot and Metaflow's @batch run only on AWS and are not measured
here. Each number is the wall time of one whole map, warm (images built beforehand).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import spmd  # noqa: E402


def work(x: int) -> int:
    """A small CPU task (~20 ms), the same for every runner."""
    total = 0
    for i in range(200_000):
        total += (i * x) % 7
    return total


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run_process_pool(items):
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(work, items))


def run_docker_per_item(items, image):
    code = ("import sys\ntotal=0\nx=int(sys.argv[1])\nfor i in range(200000): total += (i*x) % 7\n"
            "print(total)")

    def one(x):
        out = subprocess.run(["docker", "run", "--rm", image,
                              "python3", "-c", code, str(x)], capture_output=True, text=True, check=True)
        return int(out.stdout)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, items))


def run_lithops(items, store):
    import lithops
    config = {"lithops": {"backend": "localhost", "storage": "localhost"},
              "localhost": {"worker_processes": 2, "runtime": sys.executable}}
    executor = lithops.FunctionExecutor(config=config, log_level=None)
    futures = executor.map(work, items)
    return executor.get_result(futures)


def run_spmd(items, store, chunksize):
    knot = spmd.Knot(work, config={"store_dir": store, "max_vcpus": 2})
    return knot.map(items, chunksize=chunksize).results()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=48)
    n = parser.parse_args().items
    items = list(range(n))
    expected = [work(x) for x in items]
    store = tempfile.mkdtemp(prefix="spmd-bench-")
    image = spmd.Knot(work, config={"store_dir": store}).ensure_image().reference  # warm

    runs = [("process pool (2 workers, no containers)", lambda: run_process_pool(items)),
            ("spmd local, default chunks", lambda: run_spmd(items, store, None)),
            ("spmd local, chunksize=1 (a container per item)", lambda: run_spmd(items, store, 1)),
            ("docker run per item, 2 at a time (hand-written)", lambda: run_docker_per_item(items, image))]
    try:
        import lithops  # noqa: F401
        runs.append(("lithops localhost (processes)", lambda: run_lithops(items, store)))
    except ImportError:
        print("# lithops not installed here: run benchmarks/run.sh to include it")

    results = []
    for name, fn in runs:
        seconds, values = timed(fn)
        assert values == expected, f"{name} returned wrong results"
        results.append((name, seconds))
    base = dict(results)["spmd local, default chunks"]
    print(f"\n{n} items of ~20 ms each, 2 cores; ratio = time / spmd default")
    print(f"{'runner':52s} {'seconds':>8s} {'ratio':>7s}")
    for name, seconds in results:
        print(f"{name:52s} {seconds:8.2f} {seconds / base:7.2f}")


if __name__ == "__main__":
    main()
