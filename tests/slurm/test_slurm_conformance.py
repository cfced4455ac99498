"""The conformance kit on the Slurm backend, on a real single-node Slurm (conftest.py).

Slurm enforces its own time limits in whole minutes and checks them about every 30 s, so
the kit's 2 s timeouts are enforced by the batch script itself (``timeout`` around each
attempt; Slurm's --time is the backstop): the timeout tests end in seconds, not a minute.
"""
import json
import subprocess

import pytest

import spmd.testing
from spmd import layout
from spmd_slurm.queue import slurm_key


class Forgetful:
    @pytest.fixture
    def spmd_forget_job(self, spmd_store):
        """Slurm's controller no longer knows the job (restarted without its state, or past
        MinJobAge): its handle is made to name arrays this controller never had, so the real
        squeue answers "Invalid job id specified", as it does for a job it forgot; and the
        queue's own records of it (the scripts' marks, as the local fixture removes its
        queue's spec and state) are removed."""
        def forget(job_id: str) -> None:
            spmd_store.delete_prefix(slurm_key(job_id, "marks/"))
            handle = json.loads(spmd_store.get(layout.queue_key(job_id)))["handle"]
            data = json.loads(handle)
            data["arrays"] = [[str(int(a) + 50_000_000), o, n] for a, o, n in data["arrays"]]
            spmd_store.put_json(layout.queue_key(job_id), {"handle": json.dumps(data)})
        return forget


class Stoppable:
    @pytest.fixture
    def spmd_stop_task(self):
        """Slurm's warning before the time limit, sent at once: ``scancel --signal=USR1
        --batch`` of the task's array task, as ``--signal=B:USR1@N`` sends it."""
        def stop(job, task):
            for array_id, offset, n in json.loads(job.handle)["arrays"]:
                if offset <= task < offset + n:
                    subprocess.run(["scancel", "--signal=USR1", "--batch",
                                    f"{array_id}_{task - offset}"], check=True)
                    return
            raise AssertionError(f"job {job.id} has no task {task}")
        return stop


class TestSlurm(Forgetful, Stoppable, spmd.testing.BackendContract):
    @pytest.fixture
    def spmd_backend_name(self):
        return "slurm"

    @pytest.fixture
    def spmd_backend_config(self, slurm_config):
        return slurm_config


@pytest.mark.docker
class TestSlurmDocker(Forgetful, Stoppable, spmd.testing.MapContract, spmd.testing.RerunContract,
                      spmd.testing.DataContract, spmd.testing.UrlDataContract,
                      spmd.testing.ChainContract, spmd.testing.SecretsContract,
                      spmd.testing.PrivacyContract, spmd.testing.BatchQueueContract,
                      spmd.testing.ImageRegistryContract, spmd.testing.CheckpointContract):
    """The kit's parts a task's runtime changes, with ``runtime = "docker"``: each task is a
    container the script starts (what it sees, mounts, images, the signal passed on to it).
    The store, the faults, the failure budget and the cap are the client's and the queue's,
    the same for every runtime, and TestSlurm runs them."""

    @pytest.fixture
    def spmd_backend_name(self):
        return "slurm"

    @pytest.fixture
    def spmd_backend_config(self, slurm_config):
        return {**slurm_config, "runtime": "docker"}
