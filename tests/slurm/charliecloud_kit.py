"""The conformance kit with ``runtime = "charliecloud"``, run by test_slurm_charliecloud.py as a
user who is not root (pytest collects this file only when it is named on the command line).

The cluster and shared_dir are the outer session's (conftest.py's SPMD_TEST_SLURM_* variables).
"""
import pytest

import spmd.testing


@pytest.mark.docker
class TestSlurmCharliecloud(spmd.testing.BackendContract):
    @pytest.fixture
    def spmd_backend_name(self):
        return "slurm"

    @pytest.fixture
    def spmd_backend_config(self, slurm_config):
        return {**slurm_config, "runtime": "charliecloud"}
