"""Chained maps on the local backend beyond the kit: the client dies between the steps."""
import json
import subprocess
import sys
import textwrap

import spmd

SCRIPT = textwrap.dedent("""
    import json, sys
    import spmd
    from spmd.testing import functions as fn
    config = {"store_dir": sys.argv[1]}
    first = spmd.Knot(fn.sleepy, backend="local", config=config).map([1, 2, 3], chunksize=1)
    second = spmd.Knot(fn.square, backend="local", config=config).map(first)
    print(json.dumps([first.id, second.id]), flush=True)
    import os; os._exit(0)  # the client dies before either step has ended
""")


def test_the_chain_goes_on_after_its_client_died(tmp_path):
    store = str(tmp_path / "store")
    out = subprocess.run([sys.executable, "-c", SCRIPT, store], capture_output=True, text=True,
                         timeout=300, check=True)
    first_id, second_id = json.loads(out.stdout.strip().splitlines()[-1])
    second = spmd.attach(second_id, backend="local", config={"store_dir": store})
    assert second.results(timeout=180) == [1, 4, 9]
    first = spmd.attach(first_id, backend="local", config={"store_dir": store})
    assert first.results(timeout=60) == [1, 2, 3]


def test_a_step_with_nothing_left_to_start_lets_its_idle_containers_go(local, engine):
    from spmd.scheduling import queue_key
    from spmd.testing import functions as fn
    # 2 slots: step 1's short item ends while its long one runs, and nothing of step 1 is
    # left to start, so its idle container stops at once and step 2 gets the slot now,
    # not after the idle container's linger
    first = spmd.Knot(fn.sleepy, config=local).map([0.1, 15], chunksize=1)
    second = spmd.Knot(fn.square, config=local).map(first)
    assert second.futures[0].result(timeout=180) == 0.1 * 0.1
    assert not first.futures[1].done()  # step 2's item 0 ran while step 1's item 1 ran
    assert second.results(timeout=180) == [0.1 * 0.1, 225]
    log = first.backend.store.get(queue_key(first.id, "scheduler.log")).decode()
    assert "stops: the job has nothing left to start" in log
