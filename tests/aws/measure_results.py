"""The results phase of a large map on AWS, measured: the S3 requests spmd.Job makes to read
every task's output (run by hand: ``python tests/aws/measure_results.py [N]``; docs/aws.md
gives the numbers). Not a test: 25,000 GetObject take minutes even on moto in-process.

moto's Batch without containers writes no outputs, so the outputs are put where tasks put
them (``protocol.write_output`` through an S3Store, signed with the job's key, as a task's
store signs them), then a Job whose queue says every task SUCCEEDED (the Batch side of
each poll is counted by test_aws_economy.py) reads them all. moto runs in this process
(``mock_aws``), S3Store and spmd.Job are spmd's own; requests are counted with botocore's
``before-call`` hook on spmd_aws's session.
"""
from __future__ import annotations

import collections
import json
import os
import sys
import time
import types


def measure(n_items: int) -> dict:
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    from moto import mock_aws

    import spmd_aws.aws
    from spmd import codec, layout, protocol
    from spmd.batch_queue import BatchQueue, Resources, TaskStatus
    from spmd.client.job import Job
    from spmd_aws.store import S3Store

    class Ended(BatchQueue):
        """Batch's answer once every task succeeded (its requests are counted elsewhere)."""

        def submit(self, spec):
            raise NotImplementedError

        def states(self, handle):
            return {task: TaskStatus("SUCCEEDED", 1, 0) for task in range(n_items)}

        def cancel(self, handle):
            pass

        def logs(self, handle, task):
            return ""

    with mock_aws():
        store = S3Store("measure-results", region="us-east-1", create=True)
        job_id = "measure-results-1"
        manifest = layout.Manifest(job_id=job_id, name="measure", backend="aws", profile=None,
                                   n_items=n_items, chunksize=1, tasks_per_shard=1,
                                   image="x", resources=Resources())
        store.put(layout.manifest_key(job_id), manifest.to_json())
        started = time.time()
        for task in range(n_items):  # as each task's worker does
            protocol.write_output(store, job_id, protocol.TaskOutput(
                task=task, attempt=1, final=True, results=[(protocol.OK, codec.Pickled.of(task))],
                provenance=protocol.Provenance(started=started, ended=started, attempt=1,
                                               peak_memory=0, host="", image="", python="")))
        counts: collections.Counter = collections.Counter()

        def count(model, **_):
            counts[model.service_model.service_name + "." + model.name] += 1
        spmd_aws.aws.session().events.register("before-call", count)
        store.clients = spmd_aws.aws.Clients("us-east-1")  # on the counted session
        backend = types.SimpleNamespace(store=store, queue=Ended(), settings={"poll_interval": 0.1},
                                        poll_interval=0.1, poll_fast=None)
        begin = time.time()
        values = Job(backend, manifest, json.dumps({"v": 1, "jobs": []})).results()
        seconds = time.time() - begin
    assert values == list(range(n_items))
    return {"items": n_items, "calls": dict(counts), "seconds": round(seconds, 1)}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 25_000)))
