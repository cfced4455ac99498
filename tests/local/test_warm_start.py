"""How a warm container starts: the engine calls the runner makes for it, on the real engine."""
import time

import pytest

import spmd
from spmd import protocol
from spmd.scheduling import Attempt, DirectoryStore, queue_key
from spmd.testing import functions
from spmd_local.backend import LocalBackend
from spmd_local.runner import LocalRunner

pytestmark = pytest.mark.docker


def test_a_warm_container_is_created_and_started_in_two_engine_calls(local, engine, monkeypatch):
    # the attempt below runs after the job ended: its inputs must outlive it, on disk
    monkeypatch.setattr(LocalBackend, "inputs_in_memory", False)
    job = spmd.Knot(functions.square, config=local).map([3])
    assert job.results(timeout=300) == [9]
    store = DirectoryStore(local["store_dir"])
    for _ in range(3000):  # the job's scheduler has ended (its close removes its socket folder)
        if store.get_json(queue_key(job.id, "state.json"))["done"]:
            break
        time.sleep(0.1)
    config = store.get_json(queue_key(job.id, "spec.json"))
    runner = LocalRunner(store, job.id, config)
    calls = []
    runner.engine.api.hooks["response"].append(
        lambda response, *args, **kwargs: calls.append(
            (response.request.method, response.request.path_url.split("?")[0])))
    spec, memory = config["spec"], config["spec"]["resources"]["memory"]
    env = protocol.task_environment(spec["env"], 0, 2, spec["image"], 0, memory)
    try:
        assert runner.start([Attempt(0, 2, memory, env)]) == {}
        started = list(calls)
        for _ in range(3000):  # the second attempt runs in the new container (bounded wait)
            ended = runner.poll(0.1)
            if ended:
                break
        assert ended[0].exit_code == 0, ended[0].log
    finally:
        runner.close()
    # create, then start, with no inspection between (the SDK's containers.create adds one);
    # CI once saw an inspection of the new container after its start, whose source is unknown
    assert [method for method, _ in started[:2]] == ["POST", "POST"], started
    assert started[0][1].endswith("/containers/create")
    assert started[1][1].endswith("/start")
