"""A warm container's server imports what its tasks imported, so later tasks start with it."""
import pytest

import spmd

pytestmark = pytest.mark.docker


def uses_sqlite(x):
    import sys
    loaded_before = "sqlite3" in sys.modules  # at the task's start
    import sqlite3  # noqa: F401 -- the import under test
    return loaded_before


def fails_after_importing(x):
    import sys
    loaded_before = "sqlite3" in sys.modules
    import sqlite3  # noqa: F401
    if x == 0:
        raise ValueError("a failing task's imports are not taken up")
    return loaded_before


def run(func, items, env=None, store_dir=""):
    config = {"store_dir": store_dir, "max_vcpus": 1}  # one warm container serves every task
    job = spmd.Knot(func, vcpus=1, env=env, config=config).map(items, chunksize=1)
    job.wait(300)
    assert len({job.provenance(i)["host"] for i in range(len(items)) if not job.futures[i].exception()}) == 1
    return job


def test_later_tasks_find_the_modules_earlier_ones_imported(store_dir, engine):
    job = run(uses_sqlite, [0, 1, 2], store_dir=store_dir)
    assert job.results() == [False, True, True]


def test_preloading_can_be_turned_off(store_dir, engine):
    job = run(uses_sqlite, [0, 1], env={"SPMD_PRELOAD": "0"}, store_dir=store_dir)
    assert job.results() == [False, False]


def test_only_a_successful_tasks_imports_are_taken_up(store_dir, engine):
    job = run(fails_after_importing, [0, 1, 2], store_dir=store_dir)
    assert isinstance(job.futures[0].exception(), ValueError)
    assert [job.futures[i].result() for i in (1, 2)] == [False, True]
