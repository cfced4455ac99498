"""memory=[sizes] on AWS (spmd_aws.memory): one small record object per resubmission,
claimed with S3's conditional write, so no client rewrites a whole file per task (bytes
growing with the square of the count) and two watchers never submit one task twice."""
from spmd_aws import memory
from spmd_aws.store import S3Store

from awsharness import REGION


def test_records_are_one_object_each_and_claimed_once(aws_config, calls):
    store = S3Store(aws_config["bucket"], region=REGION, endpoint_url=aws_config["endpoint_url"],
                    create=True)
    key = memory.record_key("j", 7, 1)
    assert store.put_new(key, b'{"id": "", "step": 1, "before": 1}')
    # a second watcher reading the same failure loses the claim: it submits nothing
    assert not store.put_new(key, b'{"id": "", "step": 1, "before": 1}')
    assert memory.records(store, "j") == {}  # claimed, its SubmitJob under way
    store.put_json(key, {"id": "b-1", "step": 1, "before": 1})
    store.put_new(memory.record_key("j", 7, 2), b'{"id": "b-2", "step": 2, "before": 2}')
    store.put_new(memory.record_key("j", 9, 1), b'{"id": "b-3", "step": 1, "before": 1}')
    seen: dict = {}
    assert memory.records(store, "j", seen) == {
        7: [{"id": "b-1", "step": 1, "before": 1}, {"id": "b-2", "step": 2, "before": 2}],
        9: [{"id": "b-3", "step": 1, "before": 1}]}
    calls.calls.clear()
    memory.records(store, "j", seen)  # a later poll: one listing, no record read again
    assert [op for _, op, _ in calls.calls] == ["ListObjectsV2"]
    assert memory.grown_jobs(store, "j", 7) == ["b-1", "b-2"]
