"""spmd (local backend) beside its peers, in one run: medians of 3 wall times, and ratios.

    benchmarks/run.sh                      # makes benchmarks/.venv, runs this, updates README
    python benchmarks/bench.py --smoke     # 1 repetition, small sizes: a check, not a result

Workloads (each map's results are checked before its time counts):

    cpu        40 items × 0.5 s CPU
    small      200 items × 20 ms
    noop       1,000 items that return at once
    numpy      50 × 8 MB numpy arrays in, 50 × 8 MB out
    uneven     48 items of 0.1 s, the last 6 of 1 s (default chunks)
    uneven-1   the same with chunksize=1
    small-1    200 items × 20 ms with chunksize=1
    second     an unchanged Knot's second map: seconds from map() returning to the first
               result (spmd only)

Runners: concurrent.futures.ProcessPoolExecutor(2); Dask LocalCluster (2 worker processes,
1 thread each, started before timing); Lithops' localhost backend with its processes
(runtime = this Python) and in its container mode (runtime = an image that spmd's image
builder makes offline with numpy and lithops installed: Lithops' runner needs its own
dependencies in the image); spmd's local backend with a store of its own and max_vcpus=2
(the task images are built before timing). Peers have no chunksize knob that
changes their scheduling (pool.map's default is 1), so their "-1" rows are the same call.
A runner that fails a workload shows "error" and the message is printed under the table.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402

import workloads  # noqa: E402

MB = 2**20


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    func: Callable
    calls: list  # argument tuples
    chunksize: int | None = None
    check: Callable[[list], bool] | None = None


def make_workloads(smoke: bool) -> list[Workload]:
    s = 4 if smoke else 1  # smoke: a quarter of the items (and of the long items' time)
    cpu_n, small_n, noop_n, np_n, uneven_n = 40 // s, 200 // s, 1000 // s, 50 // s, 48 // s
    arrays = [np.full(MB, i, dtype=np.float64) for i in range(np_n)]  # 8 MB each
    uneven = [(i, uneven_n, 0.1) for i in range(uneven_n)]
    return [
        Workload("cpu", f"{cpu_n} × 0.5 s CPU", workloads.spin,
                 [(0.5, i) for i in range(cpu_n)]),
        Workload("small", f"{small_n} × 20 ms", workloads.spin,
                 [(0.02, i) for i in range(small_n)]),
        Workload("noop", f"{noop_n:,} no-ops", workloads.noop, [(i,) for i in range(noop_n)]),
        Workload("numpy", f"{np_n} × 8 MB numpy in and out", workloads.double,
                 [(a,) for a in arrays],
                 check=lambda out: all(np.array_equal(o, a * 2) for o, a in zip(out, arrays))),
        Workload("uneven", f"{uneven_n} uneven (last {uneven_n // 8} × 10), default chunks",
                 workloads.uneven, uneven),
        Workload("uneven-1", f"{uneven_n} uneven, chunksize=1", workloads.uneven, uneven, 1),
        Workload("small-1", f"{small_n} × 20 ms, chunksize=1", workloads.spin,
                 [(0.02, i) for i in range(small_n)], 1),
    ]


def expected(w: Workload) -> list:
    if w.func is workloads.spin:
        return [value for _, value in w.calls]
    if w.func is workloads.uneven:
        return [i for i, _, _ in w.calls]
    return [args[0] for args in w.calls]


# -- runners -------------------------------------------------------------------------------

class Pool:
    name = "ProcessPool(2)"

    def setup(self):
        pass

    def run(self, w: Workload) -> list:
        with concurrent.futures.ProcessPoolExecutor(2) as pool:
            return list(pool.map(w.func, *zip(*w.calls), chunksize=w.chunksize or 1))

    def teardown(self):
        pass


class Dask:
    name = "Dask LocalCluster(2)"

    def setup(self):
        from dask.distributed import Client, LocalCluster
        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    dashboard_address=None)
        self.client = Client(self.cluster)

    def run(self, w: Workload) -> list:
        futures = self.client.map(w.func, *zip(*w.calls), pure=False)
        return self.client.gather(futures)

    def teardown(self):
        self.client.close()
        self.cluster.close()


class Lithops:
    def __init__(self, container: bool):
        self.container = container
        self.name = "Lithops (container)" if container else "Lithops (processes)"
        self.runtime = sys.executable

    def setup(self):
        import lithops
        self.containers_before = lithops_containers()
        if self.container:
            # Lithops runs its runner from the host in the image's python3, which must hold
            # Lithops' dependencies: spmd's image builder makes one offline (wheels from here).
            self.runtime = spmd_image(extra=(f"lithops=={lithops.__version__}",))

    def run(self, w: Workload) -> list:
        import lithops
        config = {"lithops": {"backend": "localhost", "storage": "localhost", "data_limit": 0},
                  "localhost": {"worker_processes": 2, "runtime": self.runtime}}
        executor = lithops.FunctionExecutor(config=config, log_level=None)
        try:
            futures = executor.map(w.func, [tuple(c) for c in w.calls])
            return executor.get_result(futures, timeout=TIMEOUT)
        finally:
            executor.clean()

    def teardown(self):
        # Lithops' container mode leaves its executors' containers running: remove the ones
        # this run started.
        left = lithops_containers() - self.containers_before
        if left:
            import subprocess
            subprocess.run(["docker", "rm", "-f", *sorted(left)], capture_output=True)


def lithops_containers() -> set[str]:
    import subprocess
    out = subprocess.run(["docker", "ps", "-a", "--filter", "name=lithops_", "--format",
                          "{{.Names}}"], capture_output=True, text=True)
    return set(out.stdout.split())


_KNOT_OPTIONS: dict = {}


def knot_options() -> dict:
    """spmd's Knot options of this run: a store of its own, 2 CPUs, numpy in the image."""
    if not _KNOT_OPTIONS:
        store = tempfile.mkdtemp(prefix="spmd-bench-")
        _KNOT_OPTIONS.update(config={"store_dir": store, "max_vcpus": 2}, memory="1GiB",
                             requirements=[f"numpy=={np.__version__}"])
    return _KNOT_OPTIONS


def spmd_knot(func):
    import spmd
    return spmd.Knot(func, **knot_options())


def spmd_image(extra: tuple[str, ...] = ()) -> str:
    import spmd
    options = dict(knot_options())
    options["requirements"] = [*options["requirements"], *extra]
    return spmd.Knot(workloads.noop, **options).ensure_image().reference


class Spmd:
    name = "spmd (local)"

    def setup(self):
        spmd_image()  # built (or found) before any timing

    def run(self, w: Workload) -> list:
        job = spmd_knot(w.func).map(w.calls, chunksize=w.chunksize, starmap=True)
        return job.results(timeout=TIMEOUT)

    def second_map_first_result(self, n: int) -> float:
        knot = spmd_knot(workloads.noop)
        assert knot.map(range(n)).results(timeout=TIMEOUT) == list(range(n))
        job = knot.map(range(n))
        returned = time.perf_counter()
        import spmd
        first = next(spmd.as_completed(job, timeout=TIMEOUT))
        seconds = time.perf_counter() - returned
        assert first.result() == first.index
        job.results(timeout=TIMEOUT)
        return seconds

    def teardown(self):
        pass


TIMEOUT = 900


# -- the run ---------------------------------------------------------------------------------

def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:400]


def measure(runner, w: Workload, reps: int) -> tuple[float | None, str]:
    times = []
    want = None if w.check else expected(w)
    for _ in range(reps):
        try:
            started = time.perf_counter()
            out = runner.run(w)
            seconds = time.perf_counter() - started
        except Exception as exc:
            traceback.print_exc(limit=3)
            return None, first_line(exc)
        ok = w.check(list(out)) if w.check else list(out) == want
        if not ok:
            return None, "returned wrong results"
        times.append(seconds)
        print(f"  {runner.name:22s} {w.key:9s} {seconds:7.2f} s", flush=True)
    return statistics.median(times), ""


def table(workload_rows, runners, results, second) -> str:
    names = [r.name for r in runners]
    head = ["workload", *names, "spmd / pool", "spmd / Dask"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in workload_rows:
        cells = [w.label]
        for name in names:
            value = results.get((name, w.key))
            cells.append("error" if value is None else f"{value:.2f} s")
        spmd_t = results.get(("spmd (local)", w.key))
        for peer in ("ProcessPool(2)", "Dask LocalCluster(2)"):
            peer_t = results.get((peer, w.key))
            cells.append(f"{spmd_t / peer_t:.2f}×" if spmd_t and peer_t else "–")
        lines.append("| " + " | ".join(cells) + " |")
    if second is not None:
        lines.append("| second map of an unchanged Knot: first result after map() returns | "
                     + " | ".join("–" for _ in names[:-1]) + f" | {second:.2f} s | – | – |")
    return "\n".join(lines)


def update_readme(path: str, text: str, block: str = "table") -> None:
    with open(path) as handle:
        readme = handle.read()
    start, end = f"<!-- bench:{block} -->", f"<!-- /bench:{block} -->"
    block = f"{start}\n{text}\n{end}"
    if start in readme and end in readme:
        readme = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, readme,
                        flags=re.S)
    else:
        readme += "\n" + block + "\n"
    with open(path, "w") as handle:
        handle.write(readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        default=bool(os.environ.get("SPMD_BENCH_SMOKE")),
                        help="1 repetition and a quarter of the sizes (also SPMD_BENCH_SMOKE=1)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; smoke 1)")
    parser.add_argument("--only", default="", help="workload keys to run, comma-separated")
    parser.add_argument("--runners", default="pool,dask,lithops,lithops-container,spmd")
    parser.add_argument("--readme", default="", help="write the table into this README")
    parser.add_argument("--note", default="", help="a line printed above the table")
    parser.add_argument("--block", default="table",
                        help="the README block to write (between <!-- bench:BLOCK --> markers)")
    args = parser.parse_args()
    reps = args.reps or (1 if args.smoke else 3)
    rows = make_workloads(args.smoke)
    if args.only:
        keep = set(args.only.split(","))
        rows = [w for w in rows if w.key in keep]
    all_runners = {"pool": Pool(), "dask": Dask(), "lithops": Lithops(False),
                   "lithops-container": Lithops(True), "spmd": Spmd()}
    chosen = [all_runners[k] for k in args.runners.split(",")]
    spmd_runner = all_runners["spmd"]
    if spmd_runner in chosen:  # last, after the peers; its image is built first
        chosen.remove(spmd_runner)
        chosen.append(spmd_runner)
        spmd_runner.setup()  # builds the image: an error here stops the run

    results: dict[tuple[str, str], float | None] = {}
    errors: dict[str, set[str]] = {}
    for runner in chosen:
        print(f"# {runner.name}", flush=True)
        try:
            if runner is not spmd_runner:
                runner.setup()
        except Exception as exc:
            errors.setdefault(runner.name, set()).add(f"setup failed: {first_line(exc)}")
            continue
        try:
            for w in rows:
                seconds, error = measure(runner, w, reps)
                results[(runner.name, w.key)] = seconds
                if error:
                    errors.setdefault(runner.name, set()).add(f"{w.key}: {error}")
        finally:
            runner.teardown()
    second = None
    if spmd_runner in chosen and (not args.only or "second" in args.only.split(",")):
        try:
            second = statistics.median(spmd_runner.second_map_first_result(
                4 if args.smoke else 10) for _ in range(reps))
        except Exception as exc:
            traceback.print_exc(limit=3)
            errors.setdefault(spmd_runner.name, set()).add(f"second: {first_line(exc)}")

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = "SMOKE (1 repetition, a quarter of the sizes)" if args.smoke else f"median of {reps}"
    header = (f"Run {when} on {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}; {mode}.")
    if args.note:
        header += f" {args.note}"
    text = "\n".join([header, "", table(rows, chosen, results, second)])
    if errors:
        lines = []
        for name, found in errors.items():
            by_message: dict[str, list[str]] = {}
            for entry in sorted(found):
                key, _, message = entry.partition(": ")
                by_message.setdefault(message, []).append(key)
            lines += [f"- {name} ({', '.join(keys)}): {message}"
                      for message, keys in by_message.items()]
        text += "\n\nErrors:\n\n" + "\n".join(lines)
    print("\n" + text)
    if args.readme:
        update_readme(args.readme, text, args.block)


if __name__ == "__main__":
    main()
