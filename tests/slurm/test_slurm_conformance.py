"""The conformance kit on the Slurm backend, on a real single-node Slurm (conftest.py).

Slurm enforces its own time limits in whole minutes and checks them about every 30 s, so
the kit's 2 s timeouts are enforced by the batch script itself (``timeout`` around each
attempt; Slurm's --time is the backstop): the timeout tests end in seconds, not a minute.
"""
import pytest

import spmd.testing


class TestSlurm(spmd.testing.BackendContract):
    @pytest.fixture
    def spmd_backend_name(self):
        return "slurm"

    @pytest.fixture
    def spmd_backend_config(self, slurm_config):
        return slurm_config


@pytest.mark.docker
class TestSlurmDocker(spmd.testing.BackendContract):
    """The same kit with ``runtime = "docker"``: each task is a container the script starts."""

    @pytest.fixture
    def spmd_backend_name(self):
        return "slurm"

    @pytest.fixture
    def spmd_backend_config(self, slurm_config):
        return {**slurm_config, "runtime": "docker"}
