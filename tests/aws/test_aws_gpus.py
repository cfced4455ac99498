"""Knot(gpus=N) on AWS: the job definition asks Batch for them, and a compute environment
whose instance types have none refuses the map on the client."""
import pytest

import spmd
from spmd.batch_queue import ArraySpec, Resources
from spmd_aws.provision import Deployment
from spmd_aws.queue import job_definition

EC2 = Deployment("arn:aws:batch:us-east-1:1:job-queue/s-ec2", "arn:aws:iam::1:role/s-job")


def gpus_asked(request: dict) -> list[str]:
    return [r["value"] for r in request["containerProperties"]["resourceRequirements"]
            if r["type"] == "GPU"]


def test_the_knots_gpus_are_the_job_definitions_and_the_profiles_the_default():
    spec = ArraySpec("j", "img", ("run",), 1, Resources(gpus=2))
    assert gpus_asked(job_definition(spec, EC2, spec.resources.gpus or 1)) == ["2"]
    plain = ArraySpec("j", "img", ("run",), 1, Resources())
    assert gpus_asked(job_definition(plain, EC2, plain.resources.gpus or None)) == []


def square(x):
    return x * x


@pytest.mark.docker
def test_gpus_pass_the_capacity_and_no_gpu_instance_type_refuses_them(aws_knot, calls):
    knot = aws_knot(square, gpus=1)
    assert knot.backend.capacity().gpus == float("inf")
    with pytest.raises(spmd.ResourceError, match="1 GPUs.*GPU instance types"):
        knot.map([1])
    assert not [p for s, op, p in calls.calls if op in ("SubmitJob", "RegisterJobDefinition")]
