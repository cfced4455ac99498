"""The run report's timeline and the AWS cost estimate, on rows made here (no Docker)."""
from spmd.batch_queue import CANCELLED, FAILED, SUCCEEDED
from spmd.report import ItemReport, Report


def rows(states):
    made = []
    for task, state in enumerate(states):
        for item in (2 * task, 2 * task + 1):
            made.append(ItemReport(item=item, task=task, state=state, start=100.0 + task,
                                   end=100.0 + 2 * task + 3, attempts=1, reasons=("x",),
                                   peak_memory=None, host="h", image="i:t", image_digest="sha256:0"))
    return made


def test_the_timeline_has_one_bar_per_task(tmp_path):
    from plotcheck import count_bars
    states = [SUCCEEDED] * 9 + [FAILED, CANCELLED, SUCCEEDED]
    report = Report(job_id="j", rows=rows(states))
    small = report.plot(str(tmp_path / "a.png"))
    assert count_bars(small) == 12
    assert len(Report(job_id="j", rows=rows(states[:3]))) == 6
    assert count_bars(Report(job_id="j", rows=rows(states[:3])).plot(str(tmp_path / "b.png"))) == 3


def test_aws_cost_is_vcpu_seconds_times_price_plus_requests():
    from spmd_aws import cost
    report = Report(job_id="j", rows=rows([SUCCEEDED, FAILED]), vcpus=2, memory=2**30)
    # task 0 ran 3 s, task 1 ran 4 s: 7 s x 2 vCPUs
    estimate = cost.estimate(report, vcpus=2, memory=2**30, price_per_vcpu_hour=3.6)
    assert estimate.vcpu_seconds == 14
    compute = 14 / 3600 * 3.6
    assert compute < estimate.dollars < compute + 0.001
    assert estimate.requests > 0 and "estimate" in str(estimate) and cost.PRICES_AS_OF in str(estimate)
    default = cost.estimate(report, vcpus=2, memory=2**30)
    assert default.price_per_vcpu_hour == cost.EC2_PER_VCPU_HOUR and "spot" in default.note
