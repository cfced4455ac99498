"""The conformance kit (spmd.testing) on the AWS backend, the same class every backend runs.

moto plays AWS, a real registry stands in for ECR's endpoint and Docker runs the tasks;
the harness (awsharness.py) makes moto behave like AWS where the kit needs it: array
index, retries and attempts, vCPU and memory limits, the compute environment's capacity
(a task asking for all of it waits RUNNABLE), out-of-memory reasons.
"""
import pytest

import spmd.testing

pytestmark = pytest.mark.docker


class TestAws(spmd.testing.BackendContract):
    @pytest.fixture
    def spmd_backend_name(self):
        return "aws"

    @pytest.fixture
    def spmd_backend_config(self, e2e_config, base_image):
        # The end-to-end stack: 4 vCPUs of capacity, so a task of 4 vCPUs runs alone.
        return {**e2e_config, "base_image": base_image}
