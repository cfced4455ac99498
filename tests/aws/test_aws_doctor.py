"""spmd doctor on AWS (moto's server): credentials and region, then the stack before and
after `up`, with the command to run while it is missing."""
from spmd.client import doctor
from spmd_aws import provision

from awsharness import settings_of


def test_a_missing_stack_says_to_run_up_and_a_made_one_passes(aws_config):
    settings = settings_of(aws_config)
    before = {c.name: c for c in doctor.run(settings)}
    assert before["region"].ok and before["credentials"].ok and before["store"].ok
    assert not before["stack"].ok and "not set up yet" in before["stack"].detail
    assert "spmd aws up" in before["stack"].fix
    provision.up(settings)
    after = {c.name: c for c in doctor.run(settings)}
    assert after["stack"].ok, after["stack"].line()
    assert "VALID, ENABLED, as configured" in after["stack"].detail
    # moto has no policy simulator nor EC2/Fargate quotas: said, not failed
    assert after["permissions"].ok and after["permissions"].detail.startswith("not checked: ")
    assert after["quota"].ok and after["quota"].detail.startswith("not checked: ")
    assert after["instance types"].ok and "fits optimal" in after["instance types"].detail


def test_a_too_small_instance_type_fails_and_says_what_to_set(aws_config):
    settings = settings_of({**aws_config, "instance_types": ["t3.nano"]})  # 0.5 GiB
    provision.up(settings)
    found = {c.name: c for c in doctor.run(settings)}
    assert not found["instance types"].ok
    assert "t3.nano" in found["instance types"].detail
    assert "instance_types" in found["instance types"].fix
