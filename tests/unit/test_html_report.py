"""The self-contained HTML run report, from a real job on the in-memory backend (no Docker):
what it shows, that it needs nothing from the network, and what it never shows."""
import html
import re
from html.parser import HTMLParser

import pytest

from spmd.batch_queue import FAILED, SUCCEEDED
from spmd import html_report
from spmd.report import ItemReport, Report
from spmd.testing import functions
from spmd.testing.memory import Fault

WAIT = 30


class Tags(HTMLParser):
    """Every start tag with its attributes, to check what a page would fetch."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def failed_job(knot):
    """Ten items, one per task: two user errors (two types), an out of memory, a timeout, a
    pull failure, and a task lost to the engine; the rest succeed."""
    k = knot(functions.fragile, memory="512MiB", env={"STUDY_TOKEN": "env-value-never-shown"})
    pull = Fault("infrastructure", "the container could not start: pull access denied")
    k.backend.queue.faults.update({
        6: {1: Fault("oom", "out of memory (limit 512.0MiB)", log="loading volume\nkilled here\n")},
        7: {1: Fault("timeout", "timed out after 5s", log="still fitting\n")},
        8: dict.fromkeys(range(1, 5), pull),  # infrastructure losses are retried 3 times
        9: dict.fromkeys(range(1, 5), Fault("infrastructure", "the Docker engine restarted",
                                            log="engine gone\n")),
    })
    job = k.map(range(10), chunksize=1)
    job.wait(WAIT, progress=False)
    return job


def test_the_report_groups_failures_by_cause_with_counts_and_log_tails(failed_job, tmp_path):
    report = failed_job.report()
    groups = {(g.cause, g.detail): g for g in html_report.failure_groups(report)}
    assert groups[("user error", "SubjectError")].items == [3]
    assert groups[("user error", "ValueError")].items == [5]
    assert groups[("out of memory", "")].items == [6]
    # the attempt's own last words, then the scheduler core's note of why it was stopped
    assert groups[("out of memory", "")].tail.endswith(
        "killed here\nspmd: the task was stopped: out of memory (limit 512.0MiB)")
    assert groups[("timeout", "")].items == [7] and "still fitting" in groups[("timeout", "")].tail
    assert groups[("pull failure", "")].items == [8]
    assert groups[("lost", "the Docker engine restarted")].items == [9]
    assert sum(g.count for g in groups.values()) == sum(r.state == FAILED for r in report) == 6

    path = report.to_html(str(tmp_path / "run.html"))
    page = open(path, encoding="utf-8").read()
    assert page.count('class="group"') == 6
    assert 'data-cause="out of memory" data-count="1"' in page
    assert "killed here" in page and "no b0 volume" in page
    bars = re.findall(r'<rect class="bar (\w+)" data-task="(\d+)"', page)
    # one bar per task that started, in its state
    assert bars == [(r.state, str(r.task)) for r in report.tasks() if r.start is not None]
    assert [state for state, _ in bars].count(SUCCEEDED) == 4 and FAILED in dict(bars)
    assert page.count('<tr class="row') == 10
    assert failed_job.id in page and "512.0MiB memory" in page


def test_the_report_fetches_nothing_and_never_shows_the_environment(failed_job, tmp_path):
    page = open(failed_job.report().to_html(str(tmp_path / "run.html")), encoding="utf-8").read()
    parser = Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag not in ("link", "img", "iframe", "object", "embed"), tag
        assert "src" not in attrs and not attrs.get("href", "").startswith(("http", "//")), (tag, attrs)
    assert "@import" not in page and "url(" not in page
    assert "env-value-never-shown" not in page and "STUDY_TOKEN" not in page


def test_memory_against_the_limit_says_what_to_ask_for():
    rows = [ItemReport(item=i, task=i, state=SUCCEEDED, start=10.0 + i, end=20.0 + i, attempts=1,
                       reasons=("succeeded",), peak_memory=(100 + i) * 2**20, host="h", image="i:t",
                       image_digest="") for i in range(5)]
    shown = html.unescape(html_report.memory_html(Report(job_id="j", rows=rows, memory=2 * 2**30)))
    assert shown.count('class="peak"') == 5
    assert "highest 104.0MiB of the 2.0GiB limit (5%)" in shown
    assert 'memory="192MiB"' in shown  # 1.25 x 104 MiB, rounded up to 64 MiB
    tight = html_report.memory_html(Report(job_id="j", rows=rows, memory=110 * 2**20))
    assert "5 tasks came within 10% of the limit" in tight and "under half" not in tight


def test_notebook_views_are_compact(failed_job):
    shown = failed_job.report()._repr_html_()
    assert "SubjectError" in shown and "<svg" in shown and "<html" not in shown
    counts = failed_job._repr_html_()
    assert "succeeded <b>4</b>" in counts and "failed <b>6</b>" in counts


def test_the_live_report_reads_each_ended_task_once(knot, monkeypatch):
    from spmd import report as reports
    k = knot(functions.square)
    k.backend.queue.hold()  # tasks wait at their start
    job = k.map(range(3), chunksize=1)
    kept = {}
    reports.build(job, kept)
    assert kept == {}  # nothing ended: nothing kept
    k.backend.queue.release()
    assert job.wait(WAIT, progress=False)
    first = reports.build(job, kept)
    assert sorted(kept) == [0, 1, 2] and [r.state for r in first] == [SUCCEEDED] * 3
    read = []
    real = reports._output
    monkeypatch.setattr(reports, "_output", lambda job, task: read.append(task) or real(job, task))
    again = reports.build(job, kept)
    assert read == [] and again.rows == first.rows


def test_chained_steps_link_each_other_on_the_job_page(knot):
    from spmd.dashboard.views import Views
    k = knot(functions.square)
    first = k.map(range(3))
    second = k.map(first)  # item i runs once item i of the first job ended, with its result
    assert second.results(timeout=WAIT, progress=False) == [0, 1, 16]
    views = Views(k.backend)
    assert {j["id"]: j["after"] for j in views.jobs()} == {first.id: "", second.id: first.id}
    assert f'upstream: <a href="/job/{first.id}">' in views.live(second.id)["sections"]["summary"]
    assert f'next step: <a href="/job/{second.id}">' in views.live(first.id)["sections"]["summary"]


def test_requeues_are_numbered_reasons_and_counted():
    reasons = ("requeued (walltime warning), checkpoint 12.0KiB saved in 0.1s",
               "requeued (walltime warning), checkpoint 14.0KiB saved in 0.1s", "succeeded")
    rows = [ItemReport(item=0, task=0, state=SUCCEEDED, start=1.0, end=9.0, attempts=3,
                       reasons=reasons, peak_memory=None, host="h", image="i:t", image_digest=""),
            ItemReport(item=1, task=1, state=FAILED, start=1.0, end=9.0, attempts=4,
                       reasons=reasons[:1] * 4, peak_memory=None, host="h", image="i:t",
                       image_digest="", lost="requeue")]
    report = Report(job_id="j", rows=rows)
    assert rows[0].requeues == 2 and rows[1].requeues == 4
    assert ("attempt 1: requeued (walltime warning), checkpoint 12.0KiB saved in 0.1s; attempt 2: "
            "requeued (walltime warning), checkpoint 14.0KiB saved in 0.1s; attempt 3: succeeded"
            ) in report.text()
    page = html.unescape(html_report.document(report))
    assert "requeued</dt><dd>6 times, in 2 tasks" in page
    assert [g.cause for g in html_report.failure_groups(report, tail=lambda task: "")] == ["requeued"]
