"""The conformance kit on the local Docker backend."""
import threading

import pytest

import spmd.testing

pytestmark = pytest.mark.docker


class TestLocal(spmd.testing.BackendContract):
    @pytest.fixture
    def spmd_backend_name(self):
        return "local"

    @pytest.fixture
    def spmd_backend_config(self, tmp_path):
        # A store of this test's own; 2 CPUs, so a task of 2 vcpus runs alone.
        return {"store_dir": str(tmp_path / "store"), "max_vcpus": 2}

    @pytest.fixture
    def spmd_stop_task(self):
        """``docker stop`` of the container running the task, as the engine's own shutdown or
        a user does: SIGTERM, then SIGKILL after the container's stop timeout."""
        from spmd import docker_engine
        from spmd_local.runner import LABEL_JOB

        def stop(job, task):
            containers = docker_engine.client().containers.list(
                filters={"label": f"{LABEL_JOB}={job.id}"})
            assert containers, f"no running container of job {job.id}"
            for container in containers:  # docker stop waits for the container to end
                threading.Thread(target=container.stop, daemon=True).start()
        return stop
