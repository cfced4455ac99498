"""The conformance kit (spmd.testing) on the AWS backend, the same class every backend runs.

moto plays AWS, a real registry stands in for ECR's endpoint and Docker runs the tasks;
the harness (awsharness.py) makes moto behave like AWS where the kit needs it: array
index, retries and attempts, vCPU and memory limits, the compute environment's capacity
(a task asking for all of it waits RUNNABLE), out-of-memory reasons.
"""
import pytest

import spmd.testing
from awsharness import ACCOUNT, REGION

pytestmark = pytest.mark.docker


class TestAws(spmd.testing.BackendContract):
    # Batch tells a task to stop (SIGTERM, then SIGKILL 30 s later) before a spot instance
    # is reclaimed; moto cannot reclaim one, nor give the job the "Host EC2" reason Batch's
    # retry rule matches, so the test cannot stop a task as AWS would (docs/aws.md).
    spmd_stops_tasks = False

    @pytest.fixture
    def spmd_backend_name(self):
        return "aws"

    @pytest.fixture
    def spmd_backend_config(self, e2e_config, base_image):
        # The end-to-end stack: 4 vCPUs of capacity, so a task of 4 vCPUs runs alone.
        return {**e2e_config, "base_image": base_image}

    @pytest.fixture
    def spmd_forget_job(self, spmd_backend, monkeypatch):
        """Batch past its retention of ended jobs (at least 7 days, "Job states"): moto
        forgets the job's Batch jobs, and spmd takes a job nothing is listed of as forgotten
        at once instead of after FORGOTTEN_AFTER."""
        from moto.batch.models import batch_backends

        import spmd_aws.queue
        monkeypatch.setattr(spmd_aws.queue, "FORGOTTEN_AFTER", 0.0)

        def forget(job_id: str) -> None:
            jobs = batch_backends[ACCOUNT][REGION]._jobs
            ours = {b for b, job in jobs.items() if job.job_name.startswith(job_id[:120] + "-")}
            for batch_id in list(jobs):
                if batch_id.split(":")[0] in ours:  # the parents and their children
                    del jobs[batch_id]
            assert ours, f"moto has no Batch job of {job_id}"
        return forget
