"""Not a test: times the local backend on two workloads of issue 8 (run by hand, prints seconds).

    python tests/local/bench_warm.py [REPEATS]
"""
import sys
import tempfile
import time

import spmd


def nap20(x):
    import time
    time.sleep(0.02)
    return x


def noop(x):
    return x


def timed(func, items, **kwargs) -> float:
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as store:
        knot = spmd.Knot(func, config={"store_dir": store, "max_vcpus": 2}, vcpus=1, memory="1GiB")
        knot.ensure_image()
        started = time.perf_counter()
        results = knot.map(items, **kwargs).results(timeout=900)
        seconds = time.perf_counter() - started
        assert results == list(items)
        return seconds


def pool(func, items, **kwargs) -> float:
    from concurrent.futures import ProcessPoolExecutor
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as executor:
        assert list(executor.map(func, items, **kwargs)) == list(items)
    return time.perf_counter() - started


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    runs = sorted(pool(nap20, range(200)) for _ in range(repeats))
    print(f"ProcessPoolExecutor(2), 200 x 20 ms: median {runs[len(runs) // 2]:.2f}s", flush=True)
    for name, func, items, kwargs in (("200 x 20 ms, chunksize=1", nap20, range(200), {"chunksize": 1}),
                                      ("1000 no-ops", noop, range(1000), {})):
        runs = sorted(timed(func, list(items), **kwargs) for _ in range(repeats))
        print(f"{name}: median {runs[len(runs) // 2]:.2f}s  runs {[round(r, 2) for r in runs]}", flush=True)


if __name__ == "__main__":
    main()
