"""spmd.Executor's construction: a concurrent.futures.Executor taking Knot's arguments."""
import concurrent.futures
import inspect

import pytest

import spmd
from spmd.errors import UnknownBackendError


def test_is_a_stdlib_executor_with_knots_arguments(tmp_path):
    assert issubclass(spmd.Executor, concurrent.futures.Executor)
    knot_options = [p for p in inspect.signature(spmd.Knot).parameters if p != "func"]
    executor = spmd.Executor(**{"vcpus": 2, "memory": "1GiB", "retries": 1, "timeout": 30,
                                "requirements": ["numpy"], "env": {"A": "b"}, "name": "pool",
                                "config": {"store_dir": str(tmp_path)}})
    assert executor._knot.resources.vcpus == 2 and executor._knot.resources.retries == 1
    assert executor._knot.requirements == ("numpy",) and executor._knot.name == "pool"
    assert {"backend", "requirements", "base_image", "env", "vcpus", "memory", "timeout",
            "retries", "infra_retries", "name", "profile", "config", "network",
            "system_packages", "secrets", "gpus"} == set(knot_options)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        executor.submit(pow, 2, 3)


def test_bad_arguments_fail_as_in_knot():
    with pytest.raises(ValueError, match="vcpus"):
        spmd.Executor(vcpus=0)
    with pytest.raises(UnknownBackendError):
        spmd.Executor(backend="no-such-backend")
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        spmd.Executor(max_workers=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        spmd.Executor(memroy="1GiB")
