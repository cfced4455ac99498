"""Secrets on AWS: Secrets Manager through the job definition's ``secrets``. The kit
(SecretsContract) proves the task sees them and the store never holds them; this proves
that no request spmd_aws makes but CreateSecret, and no DescribeJobs answer, holds a value,
that the execution role may read exactly the job's secrets, and that they go when it ends."""
import json
import secrets as _random

import pytest

import spmd
from spmd.testing import functions as fn

pytestmark = pytest.mark.docker


def test_values_only_in_create_secret_the_role_reads_exactly_them_and_they_go(
        aws_knot, calls, boto, tmp_path):
    token, licence = f"tok-{_random.token_hex(8)}", f"lic-{_random.token_hex(8)}"
    path = tmp_path / "license.txt"
    path.write_text(licence)
    knot = aws_knot(fn.read_secrets, secrets=[spmd.Secret("LAB_TOKEN", value=token),
                                              spmd.Secret("LAB_FILE", file=str(path))])
    job = knot.map([["LAB_TOKEN", "LAB_FILE"]])
    seen = job.results(timeout=300)[0]
    assert seen["LAB_FILE"][1] == "0o600"
    created = [p for s, op, p in calls.calls if op == "CreateSecret"]
    assert len(created) == 2
    for service, operation, params in calls.calls:
        if operation != "CreateSecret":
            text = json.dumps(params, default=str)
            assert token not in text and licence not in text, (service, operation)
    [definition] = [p for s, op, p in calls.calls if op == "RegisterJobDefinition"]
    arns = sorted(r["valueFrom"] for r in definition["containerProperties"]["secrets"])
    assert definition["containerProperties"]["executionRoleArn"].endswith("-execution")
    [policy] = [p for s, op, p in calls.calls if op == "PutRolePolicy"
                and p["PolicyName"].startswith("spmd-secrets-")]
    statement = json.loads(policy["PolicyDocument"])["Statement"]
    assert [s["Action"] for s in statement] == ["secretsmanager:GetSecretValue"]
    assert sorted(statement[0]["Resource"]) == arns
    # DescribeJobs (what anyone with Batch read access sees) names the ARNs, not the values
    [submit] = [p for s, op, p in calls.calls if op == "SubmitJob"]
    batch = boto("batch")
    listed = batch.list_jobs(jobQueue=submit["jobQueue"], filters=[
        {"name": "JOB_NAME", "values": [submit["jobName"]]}])["jobSummaryList"]
    described = json.dumps(batch.describe_jobs(jobs=[j["jobId"] for j in listed]), default=str)
    assert token not in described and licence not in described
    # once the job has ended, the secrets and the role's permission for them are gone
    job.wait(timeout=300)
    job.status()
    manager = boto("secretsmanager")
    names = {s["ARN"] for s in manager.list_secrets()["SecretList"]}
    assert not names & set(arns)
    assert policy["PolicyName"] not in boto("iam").list_role_policies(
        RoleName=policy["RoleName"])["PolicyNames"]
