"""Chained maps and max_parallel on AWS Batch: the dependencies each SubmitJob carries, and a
lost upstream task (which Batch answers with "Dependent Job failed") seen as UpstreamFailed."""
import os

import pytest

import spmd
from spmd.batch_queue import ArraySpec, Resources
from spmd_aws import chain
from spmd_aws.queue import decode_handle, parts, waits_for


def spec(n_tasks: int, after_tasks) -> ArraySpec:
    return ArraySpec("j", "img", ("run",), n_tasks, Resources(), after_job="up",
                     after_handle="h", after_tasks=tuple(tuple(w) for w in after_tasks))


def test_aligned_arrays_depend_n_to_n_each_on_its_upstream_array_by_offset():
    upstream = [("A", 0, 10_000), ("B", 10_000, 10_000)]
    aligned = spec(20_000, [[t] for t in range(20_000)])
    assert chain.depends_on(aligned, 0, 10_000, upstream) == [{"jobId": "A", "type": "N_TO_N"}]
    assert chain.depends_on(aligned, 10_000, 10_000, upstream) == \
        [{"jobId": "B", "type": "N_TO_N"}]


def test_a_gather_or_unaligned_array_depends_on_whole_upstream_arrays():
    upstream = [("A", 0, 10_000), ("B", 10_000, 10_000)]
    group = spec(1, [range(20_000)])
    assert chain.depends_on(group, 0, 1, upstream) == [{"jobId": "A"}, {"jobId": "B"}]
    shifted = spec(3, [[1], [2], [0]])
    assert chain.depends_on(shifted, 0, 3, [("A", 0, 3)]) == [{"jobId": "A"}]
    reused = spec(2, [[], []])  # every item reused upstream: nothing to wait for
    assert chain.depends_on(reused, 0, 2, [("A", 0, 2)]) == []


def test_waves_of_max_parallel_each_after_the_one_before():
    assert parts(5, 2) == [(0, 2), (2, 2), (4, 1)]
    assert parts(25_000, None) == [(0, 8334), (8334, 8333), (16667, 8333)]
    assert waits_for("W0", 2, 2) == {"jobId": "W0", "type": "N_TO_N"}
    assert waits_for("W1", 2, 1) == {"jobId": "W1"}  # a smaller last wave waits for all


def crash_on_one(x):
    if x == 1:
        os._exit(3)  # the container dies: Batch fails the child, no output
    return x


def square(x):
    return x * x


@pytest.mark.docker
def test_a_lost_upstream_task_fails_only_its_own_downstream_item(aws_knot, calls):
    first = aws_knot(crash_on_one).map([0, 1, 2], chunksize=1)
    second = aws_knot(square).map(first)
    submits = [p for s, op, p in calls.calls if op == "SubmitJob"]
    assert len(submits) == 2  # chaining adds no request: the dependency rides on SubmitJob
    [(upstream_array, _, _)] = decode_handle(first.handle)
    assert submits[1]["dependsOn"] == [{"jobId": upstream_array, "type": "N_TO_N"}]
    assert second.futures[0].result(timeout=300) == 0
    assert second.futures[2].result(timeout=300) == 4
    error = second.futures[1].exception(timeout=300)
    assert isinstance(error, spmd.UpstreamFailed), error
    assert error.item == 1 and error.job_id == first.id
    assert "exit code 3" in str(error), error
    assert isinstance(first.futures[1].exception(timeout=60), spmd.TaskLost)
