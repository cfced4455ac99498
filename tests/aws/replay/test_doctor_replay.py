"""spmd doctor's checks that moto cannot answer, replayed in AWS's shapes: IAM's policy
simulator (moto 5.2.5 has no SimulatePrincipalPolicy) and the EC2 vCPU quota (moto's
Service Quotas knows only vpc's)."""
from spmd_aws import doctor
from spmd_aws.config import AwsSettings
from spmd_aws.permissions import MAP_ACTIONS

from .canned import Replay

CALLER = "arn:aws:sts::123456789012:assumed-role/lab-analyst/alice"


class Probes:
    """The Clients doctor uses, its one-attempt probes on the same (stubbed) clients."""

    def __init__(self, clients):
        self.clients, self.region = clients, clients.region

    def __call__(self, service, attempts=8):
        return self.clients(service)


def test_a_denied_action_fails_naming_it_on_the_callers_role(clients):
    with Replay(clients) as replay:
        replay.add("sts", "get_caller_identity", {"Account": "123456789012", "Arn": CALLER,
                                                  "UserId": "AROA:alice"})
        # GetRole: the assumed role's ARN with its path, which the simulator needs
        replay.add("iam", "get_role", {"Role": {
            "RoleName": "lab-analyst", "Path": "/lab/", "RoleId": "AROAEXAMPLEEXAMPLE1",
            "Arn": "arn:aws:iam::123456789012:role/lab/lab-analyst",
            "CreateDate": "2026-01-01T00:00:00Z"}}, {"RoleName": "lab-analyst"})
        # SimulatePrincipalPolicy (IAM API Reference): one EvaluationResult per action
        replay.add("iam", "simulate_principal_policy", {"IsTruncated": False, "EvaluationResults": [
            {"EvalActionName": action, "EvalResourceName": "*",
             "EvalDecision": "implicitDeny" if action in ("batch:CancelJob", "iam:PassRole")
             else "allowed"} for action in MAP_ACTIONS]},
            {"PolicySourceArn": "arn:aws:iam::123456789012:role/lab/lab-analyst",
             "ActionNames": list(MAP_ACTIONS)})
        check = doctor.optional("permissions", lambda: doctor._permissions(Probes(clients)), "fix")
    assert not check.ok
    assert "lab/lab-analyst may not batch:CancelJob, iam:PassRole" in check.detail


def test_a_vcpu_quota_below_max_vcpus_fails(clients):
    opts = AwsSettings(bucket="lab-data", max_vcpus=256)
    with Replay(clients) as replay:
        # GetServiceQuota (Service Quotas API Reference); a new account's on-demand quota
        replay.add("service-quotas", "get_service_quota", {"Quota": {
            "ServiceCode": "ec2", "QuotaCode": "L-1216C47A", "Value": 32.0,
            "QuotaName": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"}},
            {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"})
        check = doctor.optional("quota", lambda: doctor._quota(opts, Probes(clients)), "fix")
    assert not check.ok and "max_vcpus = 256" in check.detail and "32 vCPUs" in check.detail
