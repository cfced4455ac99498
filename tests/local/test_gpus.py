"""Knot(gpus=N) where the engine has no GPU: refused at map(), nothing submitted."""
import pytest

import spmd
from spmd.testing import functions
from spmd_local import gpus


@pytest.mark.parametrize("backend", ["local", "process"])
def test_a_gpu_task_on_a_machine_without_gpus_is_refused_before_submitting(tmp_path, backend):
    store = tmp_path / "store"
    knot = spmd.Knot(functions.square, gpus=1, backend=backend, config={"store_dir": str(store)})
    with pytest.raises(spmd.ResourceError, match=f"asks for 1 GPU, but the {backend} backend has 0"):
        knot.map(range(3))
    assert not list(store.glob("spmd/jobs/*")), "a job was written"


def test_the_engine_here_offers_no_gpu_and_a_request_names_the_gpu_capability():
    from spmd import docker_engine
    assert gpus.count(docker_engine.client().info()) == 0  # this machine has no NVIDIA runtime
    request, = gpus.device_requests(2)
    assert request["Count"] == 2 and request["Capabilities"] == [["gpu"]]
    assert gpus.device_requests(0) == []


def test_gpus_must_be_a_whole_number():
    with pytest.raises(ValueError, match="gpus=1.5 must be a whole number"):
        spmd.Knot(functions.square, gpus=1.5, backend="local")
