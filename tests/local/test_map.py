"""map on the real Docker engine: results, order, kinds of functions, chunks, states."""
import os
import subprocess
import sys
import textwrap

import pytest

import spmd
import userlib
from spmd.testing.functions import slow_triple

pytestmark = pytest.mark.docker


def square(x):
    return x * x


def add(a, b=0, *, scale=1):
    return (a + b) * scale


def test_results_in_input_order(local, engine):
    job = spmd.Knot(square, config=local).map(range(12), chunksize=1)
    assert len(job) == 12 and len(job.futures) == 12
    assert job.results(timeout=300) == [x * x for x in range(12)]
    assert [f.index for f in job.futures] == list(range(12))
    assert job.status()["SUCCEEDED"] == 12


def test_closure_lambda_and_user_module(local, engine):
    offset = 1000
    closure = spmd.Knot(lambda x: x + offset, config=local).map([1, 2])
    module_fn = spmd.Knot(userlib.triple, config=local).map([1, 2])
    assert closure.results(timeout=300) == [1001, 1002]
    assert module_fn.results(timeout=300) == [3, 6]


def test_starmap_and_keyword_args(local, engine):
    knot = spmd.Knot(add, config=local)
    assert knot.map([(1, 2), (3, 4)], starmap=True).results(timeout=300) == [3, 7]
    job = knot.map([spmd.Args(1, 2, scale=10), spmd.Args(5)])
    assert job.results(timeout=300) == [30, 5]


def test_main_function_and_module_beside_the_script(tmp_path, store_dir, engine):
    (tmp_path / "helpers_beside.py").write_text("def shout(s):\n    return s.upper() + '!'\n")
    (tmp_path / "script.py").write_text(textwrap.dedent(f"""
        import spmd
        from helpers_beside import shout

        def greet(name):
            return shout("hello " + name)

        if __name__ == "__main__":
            job = spmd.Knot(greet, config={{"store_dir": {store_dir!r}}}).map(["ada", "bob"])
            print(job.results(timeout=300))
    """))
    out = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['HELLO ADA!', 'HELLO BOB!']"


def test_chunksize_groups_items_into_fewer_containers(local, engine):
    # Each task takes seconds, so both slots' containers start before either task ends (an
    # instant task may let one warm container serve both).
    job = spmd.Knot(slow_triple, config=local).map(range(10), chunksize=5)
    assert job.results(timeout=300) == [3 * x for x in range(10)]
    assert job.manifest.n_tasks == 2
    hosts = {job.provenance(i)["host"] for i in range(10)}
    assert len(hosts) == 2
    assert sum(job.status().values()) == 2


def test_default_chunksize_follows_capacity(local, engine):
    job = spmd.Knot(square, config=local).map(range(40))  # 2 CPUs, 1 vcpu each
    assert job.manifest.chunksize == 5 and job.manifest.n_tasks == 8
    assert job.results(timeout=300)[-1] == 39 * 39


def test_as_completed_and_wait_work_on_spmd_futures(local, engine):
    import concurrent.futures
    job = spmd.Knot(square, config=local).map(range(4), chunksize=1)
    seen = sorted(f.result() for f in spmd.as_completed(job, timeout=300))
    assert seen == [0, 1, 4, 9]
    done, not_done = concurrent.futures.wait(job.futures, timeout=1)
    assert len(done) == 4 and not not_done
    called = []
    job.futures[0].add_done_callback(lambda f: called.append(f.result()))
    assert called == [0]


def test_empty_map(local):
    job = spmd.Knot(square, config=local).map([])
    assert len(job) == 0 and job.results(timeout=5) == []


def test_logs_hold_what_the_task_printed(local, engine):
    def chatty(x):
        print(f"working on item {x}", flush=True)
        return x

    job = spmd.Knot(chatty, config=local).map(["alpha", "beta"], chunksize=1)
    job.wait(300)
    assert "working on item beta" in job.logs(1)
    assert "working on item alpha" not in job.logs(1)
    provenance = job.provenance(0)
    assert provenance["attempt"] == 1 and provenance["peak_memory"] > 1_000_000
    assert provenance["image"] == job.manifest.image
    assert provenance["ended"] >= provenance["started"]


def test_environment_reaches_the_task(local, engine):
    job = spmd.Knot(lambda _: os.environ["LAB"], env={"LAB": "vision"}, config=local).map([0])
    assert job.results(timeout=300) == ["vision"]
