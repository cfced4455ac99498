"""What a profile cannot run on AWS, refused when the config loads: before any AWS call,
before an image is built or a task submitted."""
import pytest

from spmd.errors import ConfigError
from spmd_aws.architectures import of_instance_type
from spmd_aws.config import AwsSettings

from awsharness import settings_of

BASE = {"backend": "aws", "region": "us-east-1", "bucket": "lab-data"}


def load(**config) -> AwsSettings:
    return AwsSettings.from_settings(settings_of({**BASE, **config}))


def test_fargate_spot_on_arm64_is_refused():
    # "RuntimePlatform" (AWS Batch; CloudFormation's AWS::Batch::JobDefinition RuntimePlatform):
    # Fargate Spot does not run ARM64; a queue of only Fargate Spot would be blocked.
    with pytest.raises(ConfigError, match="Fargate Spot does not run ARM64") as caught:
        load(fargate=True, spot=True, architecture="arm64")
    assert caught.value.key == "architecture"
    assert load(fargate=True, architecture="arm64").architecture == "arm64"
    assert load(fargate=True, spot=True).stack.spot


@pytest.mark.parametrize("architecture, types, refused", [
    ("arm64", ["c6i", "m5.large"], "c6i, m5.large"),
    ("arm64", ["optimal"], "optimal"),
    ("arm64", ["c7g", "g4dn.xlarge"], "g4dn.xlarge"),
    ("x86_64", ["c7g.large", "c6i"], "c7g.large"),
    ("x86_64", ["default_arm64"], "default_arm64"),
])
def test_instance_types_of_another_architecture_are_refused(architecture, types, refused):
    with pytest.raises(ConfigError, match=f"instance_types {refused} are not {architecture}") \
            as caught:
        load(architecture=architecture, instance_types=types)
    assert caught.value.key == "instance_types" and "exec format error" in str(caught.value)


def test_instance_types_of_the_architecture_are_accepted():
    assert load(architecture="arm64").instance_types == ("default_arm64",)
    assert load(architecture="arm64", instance_types=["c7g", "m6gd.large", "x2gd", "a1",
                                                      "g5g.xlarge", "im4gn"]).architecture == "arm64"
    assert load(instance_types=["c6i", "g4dn.xlarge", "m6a", "r7iz", "gr6.4xlarge",
                                "m7i-flex.large", "optimal"]).architecture == "x86_64"
    # a name EC2's conventions do not explain is left to EC2
    assert of_instance_type("mac2.metal") is None
    assert load(instance_types=["mac2.metal"]).instance_types == ("mac2.metal",)
