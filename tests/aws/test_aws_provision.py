"""up and down on moto: idempotent, least privilege, tagged, and down touches only the stack's own."""
import json

import pytest

from spmd_aws import provision
from spmd_aws.stack import TAG_KEY

from awsharness import ACCOUNT, settings_of


def _tags(pairs):
    return {t["Key"]: t["Value"] for t in pairs}


def test_up_twice_creates_each_resource_once(aws_config, calls):
    settings = settings_of(aws_config)
    first = provision.up(settings)
    created = first.names("created")
    stack = aws_config["stack"]
    assert set(created) >= {
        f"bucket {aws_config['bucket']}", f"ECR repository {stack}-tasks",
        f"IAM role {stack}-job", f"IAM role {stack}-instance", f"instance profile {stack}-instance",
        f"compute environment {stack}-ec2", f"job queue {stack}-ec2"}
    assert first.deployment.job_queue.endswith(f":job-queue/{stack}-ec2")
    creations = [op for _, op, _ in calls.calls if op.startswith("Create")]

    calls.calls.clear()
    second = provision.up(settings)
    assert second.names("created") == []
    assert [op for _, op, _ in calls.calls if op.startswith(("Create", "Register"))] == []
    assert len(second.names("found")) == len(first.lines)
    assert second.deployment == first.deployment
    assert creations.count("CreateComputeEnvironment") == creations.count("CreateJobQueue") == 1
    assert f"stack {stack}:" in str(second) and "found" in str(second)


def test_resources_are_tagged_named_and_least_privilege(aws_config, boto):
    stack, bucket = aws_config["stack"], aws_config["bucket"]
    provision.up(settings_of({**aws_config, "bucket": f"{bucket}/runs"}))
    iam, batch = boto("iam"), boto("batch")
    job_role = iam.get_role(RoleName=f"{stack}-job")["Role"]
    assert job_role["Path"] == f"/spmd/{stack}/"
    assert _tags(iam.list_role_tags(RoleName=f"{stack}-job")["Tags"]) == {TAG_KEY: stack}
    trust = job_role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    # only this account's tasks may assume it (confused deputy; "Task IAM role", ECS guide)
    assert trust["Statement"][0]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT}}
    # a role an earlier spmd made without the condition gets it from the next up
    iam.update_assume_role_policy(RoleName=f"{stack}-job", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]}))
    assert f"IAM role {stack}-job" in " ".join(
        provision.up(settings_of({**aws_config, "bucket": f"{bucket}/runs"})).names("updated"))
    trust = iam.get_role(RoleName=f"{stack}-job")["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    policy = iam.get_role_policy(RoleName=f"{stack}-job", PolicyName="spmd")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    resources = [s["Resource"] for s in policy["Statement"]]
    assert resources == [f"arn:aws:s3:::{bucket}/runs/jobs/*", f"arn:aws:s3:::{bucket}"]
    assert policy["Statement"][1]["Condition"] == {"StringLike": {"s3:prefix": "runs/jobs/*"}}
    assert {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                     else s["Action"])} == \
        {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    assert iam.list_attached_role_policies(RoleName=f"{stack}-job")["AttachedPolicies"] == []
    attached = iam.list_attached_role_policies(RoleName=f"{stack}-instance")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AmazonEC2ContainerServiceforEC2Role"]

    [env] = batch.describe_compute_environments(computeEnvironments=[f"{stack}-ec2"])["computeEnvironments"]
    assert env["tags"] == {TAG_KEY: stack} and env["type"] == "MANAGED"
    resources = env["computeResources"]
    assert resources["type"] == "EC2" and resources["minvCpus"] == 0 and resources["maxvCpus"] == 256
    assert resources["instanceRole"].endswith(f":instance-profile/spmd/{stack}/{stack}-instance")
    # the instances' metadata is out of the tasks' reach: IMDSv2 only, hop limit 1
    assert resources["launchTemplate"]["launchTemplateName"] == f"{stack}-instances"
    [version] = boto("ec2").describe_launch_template_versions(
        LaunchTemplateName=f"{stack}-instances", Versions=["$Default"])["LaunchTemplateVersions"]
    assert version["LaunchTemplateData"]["MetadataOptions"] == {
        "HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"}
    default_vpc = boto("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    subnets = boto("ec2").describe_subnets(SubnetIds=resources["subnets"])["Subnets"]
    assert {s["VpcId"] for s in subnets} == {default_vpc["VpcId"]}
    [queue] = batch.describe_job_queues(jobQueues=[f"{stack}-ec2"])["jobQueues"]
    assert queue["tags"] == {TAG_KEY: stack} and queue["state"] == "ENABLED"
    repo = boto("ecr").describe_repositories(repositoryNames=[f"{stack}-tasks"])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    # what keeps costing after a map is bounded: images by count, task logs by age
    lifecycle = json.loads(boto("ecr").get_lifecycle_policy(
        repositoryName=f"{stack}-tasks")["lifecyclePolicyText"])
    assert {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10} in \
        [rule["selection"] for rule in lifecycle["rules"]]
    [group] = boto("logs").describe_log_groups(logGroupNamePrefix=f"/spmd/{stack}/")["logGroups"]
    assert (group["logGroupName"], group["retentionInDays"]) == (f"/spmd/{stack}/tasks", 30)
    assert boto("logs").list_tags_log_group(logGroupName=group["logGroupName"])["tags"] == \
        {TAG_KEY: stack}


def test_spot_and_configured_network_and_capacity(aws_config, boto):
    ec2 = boto("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="spmd-test", Description="t", VpcId=vpc)["GroupId"]
    config = {**aws_config, "spot": True, "subnets": [subnet], "security_groups": [group],
              "max_vcpus": 32, "instance_types": ["c5.large"]}
    report = provision.up(settings_of(config))
    stack = aws_config["stack"]
    assert f"compute environment {stack}-spot" in report.names("created")
    [env] = boto("batch").describe_compute_environments(
        computeEnvironments=[f"{stack}-spot"])["computeEnvironments"]
    resources = env["computeResources"]
    assert resources["type"] == "SPOT" and resources["maxvCpus"] == 32
    assert resources["subnets"] == [subnet] and resources["securityGroupIds"] == [group]
    assert resources["instanceTypes"] == ["c5.large"]
    again = provision.up(settings_of({**config, "max_vcpus": 64}))
    assert again.names("updated") == [f"compute environment {stack}-spot (maxvCpus 32 → 64)"]


def test_down_removes_the_stack_and_leaves_what_is_not_tagged(aws_config, boto):
    stack, bucket = aws_config["stack"], aws_config["bucket"]
    s3, iam, batch = boto("s3"), boto("iam"), boto("batch")
    # Untagged things made beforehand, named like the stack's and in its IAM path.
    s3.create_bucket(Bucket=f"{stack}-keep")
    iam.create_role(RoleName=f"{stack}-keep", Path=f"/spmd/{stack}/",
                    AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    settings = settings_of(aws_config)
    provision.up(settings)
    profile_arn = iam.get_instance_profile(InstanceProfileName=f"{stack}-instance")[
        "InstanceProfile"]["Arn"]
    service_role = iam.list_roles(PathPrefix="/aws-service-role/batch.amazonaws.com/")["Roles"][0]["Arn"]
    subnet = batch.describe_compute_environments(computeEnvironments=[f"{stack}-ec2"])[
        "computeEnvironments"][0]["computeResources"]
    batch.create_compute_environment(
        computeEnvironmentName=f"{stack}-keep", type="MANAGED", state="ENABLED", serviceRole=service_role,
        computeResources={"type": "EC2", "minvCpus": 0, "maxvCpus": 2, "instanceTypes": ["optimal"],
                          "subnets": subnet["subnets"], "securityGroupIds": subnet["securityGroupIds"],
                          "instanceRole": profile_arn})
    batch.create_job_queue(jobQueueName=f"{stack}-keep", priority=1, state="ENABLED",
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": f"{stack}-keep"}])
    s3.put_object(Bucket=bucket, Key="jobs/x/manifest.json", Body=b"{}")
    # a job's secret left by a job nobody watched to its end (as spmd_aws.secrets makes
    # it), and a secret of the same name pattern that is not the stack's
    manager = boto("secretsmanager")
    tags = [{"Key": TAG_KEY, "Value": stack}, {"Key": "spmd:job", "Value": "j-1"}]
    manager.create_secret(Name=f"{stack}/j-1/TOKEN", SecretString="s", Tags=tags)
    manager.create_secret(Name=f"{stack}/mine", SecretString="s")

    report = provision.down(settings)
    deleted = report.names("deleted")
    assert set(deleted) >= {f"job queue {stack}-ec2", f"compute environment {stack}-ec2",
                            f"IAM role {stack}-job", f"IAM role {stack}-instance",
                            f"instance profile {stack}-instance", f"ECR repository {stack}-tasks",
                            f"bucket {bucket}", f"log group /spmd/{stack}/tasks",
                            f"launch template {stack}-instances"}
    # nothing tagged with the stack is left
    assert [s["Name"] for s in manager.list_secrets()["SecretList"]
            if s["Name"].startswith(f"{stack}/")] == [f"{stack}/mine"]
    assert f"secret {stack}/j-1/TOKEN" in deleted
    assert [q for q in batch.describe_job_queues()["jobQueues"]
            if q.get("tags", {}).get(TAG_KEY) == stack and q["status"] != "DELETED"] == []
    assert [e for e in batch.describe_compute_environments()["computeEnvironments"]
            if e.get("tags", {}).get(TAG_KEY) == stack and e["status"] != "DELETED"] == []
    assert [r["RoleName"] for r in iam.list_roles(PathPrefix=f"/spmd/{stack}/")["Roles"]] == \
        [f"{stack}-keep"]
    assert [p for p in iam.list_instance_profiles()["InstanceProfiles"]
            if p["Path"] == f"/spmd/{stack}/"] == []
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(boto("ecr").exceptions.RepositoryNotFoundException):
        boto("ecr").describe_repositories(repositoryNames=[f"{stack}-tasks"])
    # the untagged ones are untouched
    assert f"{stack}-keep" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    [queue] = batch.describe_job_queues(jobQueues=[f"{stack}-keep"])["jobQueues"]
    assert queue["state"] == "ENABLED"
    assert batch.describe_compute_environments(
        computeEnvironments=[f"{stack}-keep"])["computeEnvironments"][0]["state"] == "ENABLED"
    # a second down finds nothing to do
    again = provision.down(settings)
    assert again.names("deleted") == [] and again.names("absent") == [
        f"launch template {stack}-instances", f"log group /spmd/{stack}/tasks", f"ECR repository {stack}-tasks", f"bucket {bucket}"]


def test_down_keeps_a_configured_bucket_it_did_not_create(aws_config, boto):
    s3, bucket = boto("s3"), aws_config["bucket"]
    s3.create_bucket(Bucket=bucket)
    settings = settings_of(aws_config)
    assert "bucket " + bucket in provision.up(settings).names("found")
    report = provision.down(settings)
    assert ("kept (not tagged by this stack)", "bucket", bucket) in report.lines
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_deployment_looks_up_and_provisions_only_when_missing(aws_config, calls):
    settings = settings_of(aws_config)
    first = provision.deployment(settings)
    assert calls.count("batch", "CreateJobQueue") == 1
    calls.calls.clear()
    assert provision.deployment(settings) == first
    # the job role, and its policy: read_buckets/write_buckets changes are followed
    assert [op for _, op, _ in calls.calls] == ["DescribeJobQueues", "DescribeComputeEnvironments",
                                                "GetRole", "GetRolePolicy"]


def test_a_configured_job_role_is_used_and_not_created(aws_config, boto):
    role = boto("iam").create_role(RoleName="lab-own-role", AssumeRolePolicyDocument="{}")["Role"]
    report = provision.up(settings_of({**aws_config, "job_role": "lab-own-role"}))
    assert report.deployment.job_role == role["Arn"]
    assert f"IAM role {aws_config['stack']}-job" not in report.names("created")


def test_subnets_and_security_groups_of_different_vpcs_are_refused(aws_config, boto):
    from spmd.errors import ConfigError
    from spmd_aws import compute
    from spmd_aws.config import AwsSettings
    ec2 = boto("ec2")
    vpcs = [ec2.create_vpc(CidrBlock=f"10.{n}.0.0/16")["Vpc"]["VpcId"] for n in (21, 22)]
    subnet = ec2.create_subnet(VpcId=vpcs[0], CidrBlock="10.21.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="other", Description="t", VpcId=vpcs[1])["GroupId"]
    opts = AwsSettings.from_settings(settings_of(aws_config))
    with pytest.raises(ConfigError) as info:
        compute.network(opts.clients(), AwsSettings(
            bucket=opts.bucket, region=opts.region, endpoint_url=opts.endpoint_url,
            subnets=(subnet,), security_groups=(group,)))
    message = str(info.value)
    assert f"{subnet} is in {vpcs[0]}" in message and f"{group} is in {vpcs[1]}" in message
    assert info.value.key == "security_groups"
    # subnets alone: their own VPC's default group, not the default VPC's
    [default] = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpcs[0]]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    assert compute.network(opts.clients(), AwsSettings(
        bucket=opts.bucket, region=opts.region, endpoint_url=opts.endpoint_url,
        subnets=(subnet,))) == ([subnet], [default["GroupId"]])


def test_capacity_is_what_the_compute_environment_has(aws_config, boto, harness, calls,
                                                      caplog):
    from spmd_aws.backend import AwsBackend
    stack = aws_config["stack"]
    batch = boto("batch")

    def deployed():
        [env] = batch.describe_compute_environments(
            computeEnvironments=[f"{stack}-ec2"])["computeEnvironments"]
        return env["computeResources"]
    provision.up(settings_of({**aws_config, "max_vcpus": 8, "instance_types": ["c5"]}))
    # the config changed: a map runs on the stack as it is (changing it could end others'
    # running jobs) and says what differs and the command that applies it
    calls.calls.clear()
    backend = AwsBackend(settings_of({**aws_config, "max_vcpus": 16, "instance_types": ["c6i"]}))
    assert backend.capacity().vcpus == 8 == deployed()["maxvCpus"]
    assert deployed()["instanceTypes"] == ["c5"]
    assert calls.count("batch", "UpdateComputeEnvironment") == 0
    assert "maxvCpus 8 → 16; instanceTypes c5 → c6i" in caplog.text
    assert "`spmd aws up`" in caplog.text
    # up applies it (nothing runs on the queue)
    provision.up(settings_of({**aws_config, "max_vcpus": 16, "instance_types": ["c6i"]}))
    assert deployed()["maxvCpus"] == 16 and deployed()["instanceTypes"] == ["c6i"]
    # an environment the stack does not own is left as it is: capacity is what it has
    batch.untag_resource(resourceArn=batch.describe_compute_environments(
        computeEnvironments=[f"{stack}-ec2"])["computeEnvironments"][0]["computeEnvironmentArn"],
        tagKeys=[TAG_KEY])
    backend = AwsBackend(settings_of({**aws_config, "max_vcpus": 64, "instance_types": ["c6i"]}))
    assert backend.capacity().vcpus == 16 == deployed()["maxvCpus"]


def test_fargate_needs_no_launch_template(aws_config, boto):
    # Fargate tasks never reach an instance's metadata service: no template is made
    report = provision.up(settings_of({**aws_config, "fargate": True}))
    stack = aws_config["stack"]
    assert not [n for n in report.names("created") if n.startswith("launch template")]
    [env] = boto("batch").describe_compute_environments(
        computeEnvironments=[f"{stack}-fargate"])["computeEnvironments"]
    assert "launchTemplate" not in env["computeResources"]
    with pytest.raises(Exception, match="NotFound"):
        boto("ec2").describe_launch_templates(LaunchTemplateNames=[f"{stack}-instances"])
