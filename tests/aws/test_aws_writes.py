"""Whose writes a job's objects are (spmd_aws.signing): the job role may write all of
``jobs/`` (Batch cannot narrow it per job), so the client refuses an object of its job that
its job's tasks or itself did not write. moto does not enforce IAM; what is tested is the
signatures, the refusal, and that the secret lies outside what the job role may read."""
import pytest

from spmd.errors import ResultDamaged
from spmd_aws import signing
from spmd_aws.permissions import job_policy
from spmd_aws.store import S3Store

from awsharness import REGION


def store(aws_config, **kw) -> S3Store:
    return S3Store(aws_config["bucket"], "lab", region=REGION,
                   endpoint_url=aws_config["endpoint_url"], create=True, **kw)


def as_task_of(monkeypatch, client: S3Store, job: str, aws_config) -> S3Store:
    """The store a task of job opens: its job key in its environment, nothing else."""
    monkeypatch.setenv(signing.ENV, client.job_key(job).hex())
    task = S3Store.from_url(client.url)
    monkeypatch.delenv(signing.ENV)
    return task


def test_the_client_refuses_what_another_jobs_task_wrote(aws_config, monkeypatch, boto, tmp_path):
    client = store(aws_config)
    client.put("jobs/a/manifest.json", b"{}")  # the client signs its own writes
    assert client.get("jobs/a/manifest.json") == b"{}"
    own, other = (as_task_of(monkeypatch, client, job, aws_config) for job in ("a", "b"))
    own.put("jobs/a/output/0.pkl", b"result of a")
    assert client.get("jobs/a/output/0.pkl") == b"result of a"
    # a task of job b overwrites job a's output (its job role may): refused, never unpickled
    other.put("jobs/a/output/0.pkl", b"a pickle of b's making")
    with pytest.raises(ResultDamaged, match="not written by job a's tasks or client") as caught:
        client.get("jobs/a/output/0.pkl")
    assert caught.value.job_id == "a"
    # and so is one with no signature at all (a raw put), also as a file
    boto("s3").put_object(Bucket=aws_config["bucket"], Key="lab/jobs/a/output/1.pkl", Body=b"x")
    with pytest.raises(ResultDamaged):
        client.get("jobs/a/output/1.pkl")
    with pytest.raises(ResultDamaged):
        client.get_file("jobs/a/output/1.pkl", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    own.put_file("jobs/a/files/0/x.txt", _file(tmp_path, b"data"))
    client.get_file("jobs/a/files/0/x.txt", tmp_path / "x.txt")
    assert (tmp_path / "x.txt").read_bytes() == b"data"
    # a task checks nothing (it cannot: it knows only its own job's key); ranges are not checked
    assert other.get("jobs/a/output/0.pkl") == b"a pickle of b's making"
    assert client.get("jobs/a/output/0.pkl", 0, 1) == b"a"
    # another client of the bucket (a reattach elsewhere) reads the same secret
    assert store(aws_config).job_key("a") == client.job_key("a") != client.job_key("b")


def test_the_secret_is_out_of_the_job_roles_reach(aws_config):
    secret = f"lab/{signing.SECRET_KEY}"
    assert not secret.startswith("lab/jobs/")  # the job role reads and writes lab/jobs/* only
    policy = job_policy("lab-data", "lab", read=("lab-data",))  # the data bucket named again
    assert {"Sid": "NoWriteSecret", "Effect": "Deny", "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": f"arn:aws:s3:::lab-data/{secret}"} in policy["Statement"]


def _file(tmp_path, data: bytes):
    path = tmp_path / "in"
    path.write_bytes(data)
    return path
