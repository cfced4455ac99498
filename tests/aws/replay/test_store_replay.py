"""A GetObject S3 denies (403), read against the job role's policy: missing only when the
listing that policy allows says so. moto never answers 403 for a missing key."""
import fnmatch

import pytest

from spmd import protocol
from spmd.errors import ObjectNotFound, StoreError
from spmd_aws.permissions import job_policy
from spmd_aws.store import S3Store

from .canned import Replay

OUTPUT = "jobs/j-1/output/000001.pkl"



def allows(policy: dict, action: str, resource: str, prefix: str | None = None) -> bool:
    """Whether one of policy's Allow statements grants action on resource (with s3:prefix)."""
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) \
            else [statement["Action"]]
        if statement["Effect"] != "Allow" or action not in actions or \
                not fnmatch.fnmatchcase(resource, statement["Resource"]):
            continue
        condition = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if condition is None or prefix is not None and fnmatch.fnmatchcase(prefix, condition):
            return True
    return False


def test_the_job_policy_grants_only_the_stack_prefix_and_its_listing():
    policy = job_policy("lab-data", "runs")
    bucket, objects = "arn:aws:s3:::lab-data", "arn:aws:s3:::lab-data/runs/jobs/*"
    assert [s["Sid"] for s in policy["Statement"]] == ["JobData", "ListJobData"]
    assert policy["Statement"][0] == {"Sid": "JobData", "Effect": "Allow",
                                      "Action": ["s3:GetObject", "s3:PutObject"],
                                      "Resource": objects}
    assert policy["Statement"][1] == {"Sid": "ListJobData", "Effect": "Allow",
                                      "Action": "s3:ListBucket", "Resource": bucket,
                                      "Condition": {"StringLike": {"s3:prefix": "runs/jobs/*"}}}
    assert allows(policy, "s3:GetObject", f"arn:aws:s3:::lab-data/runs/{OUTPUT}")
    assert not allows(policy, "s3:GetObject", "arn:aws:s3:::lab-data/runs/other")
    assert not allows(policy, "s3:ListBucket", bucket, prefix="runs/")
    assert not allows(policy, "s3:DeleteObject", f"arn:aws:s3:::lab-data/runs/{OUTPUT}")
    assert job_policy("lab-data", "")["Statement"][1]["Condition"] == \
        {"StringLike": {"s3:prefix": "jobs/*"}}


def test_a_403_on_a_missing_output_is_missing_after_a_listing_the_policy_allows(clients):
    store = S3Store("lab-data", "runs", clients=clients)
    with Replay(clients) as replay:
        # GetObject (Amazon S3 API Reference): "If you don't have the s3:ListBucket
        # permission, Amazon S3 returns an HTTP status code 403 Access Denied error."
        replay.add_error("s3", "get_object", "AccessDenied", "Access Denied", 403)
        # ListObjectsV2 (Amazon S3 API Reference): no such key under the prefix
        replay.add("s3", "list_objects_v2", {"IsTruncated": False, "KeyCount": 0},
                   {"Bucket": "lab-data", "Prefix": f"runs/{OUTPUT}", "MaxKeys": 1})
        # the worker's retry reads the earlier attempt's output: none, so it runs every call
        assert protocol.read_output(store, "j-1", 1) is None
    [(_, _, listing)] = [r for r in replay.requests if r[1] == "ListObjectsV2"]
    assert allows(job_policy("lab-data", "runs"), "s3:ListBucket", "arn:aws:s3:::lab-data",
                  prefix=listing["Prefix"])  # the policy and the store agree


def test_a_403_on_an_object_that_exists_stays_a_denial(clients):
    store = S3Store("lab-data", "runs", clients=clients)
    with Replay(clients) as replay:
        replay.add_error("s3", "get_object", "AccessDenied", "Access Denied", 403)
        replay.add("s3", "list_objects_v2", {"IsTruncated": False, "KeyCount": 1,
                                             "Contents": [{"Key": f"runs/{OUTPUT}", "Size": 9}]})
        with pytest.raises(StoreError) as info:
            store.get(OUTPUT)
    assert not isinstance(info.value, ObjectNotFound)
    assert "AccessDenied" in str(info.value) and "lacks a permission" in str(info.value)


def test_a_403_that_cannot_be_checked_stays_a_denial(clients):
    store = S3Store("lab-data", "runs", clients=clients)
    with Replay(clients) as replay:
        replay.add_error("s3", "get_object", "AccessDenied", "Access Denied", 403)
        replay.add_error("s3", "list_objects_v2", "AccessDenied", "Access Denied", 403)
        with pytest.raises(StoreError) as info:
            store.get(OUTPUT)
    assert not isinstance(info.value, ObjectNotFound)
