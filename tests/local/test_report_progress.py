"""The run report and the progress bar against real jobs on the local Docker backend."""
import os
import re

import pytest

import spmd
from plotcheck import count_bars
from spmd.batch_queue import FAILED, SUCCEEDED

pytestmark = pytest.mark.docker


def work(x):
    if x == 3:
        os._exit(7)  # the task dies without writing its output: a lost task
    if x == 2:
        raise ValueError(f"bad input {x}")
    return x * 10


def test_report_has_a_row_per_item_lost_ones_included(local, engine, tmp_path):
    job = spmd.Knot(work, config=local, memory="256MiB", retries=0).map(range(5), chunksize=1)
    assert job.wait(300, progress=False)
    report = job.report()
    assert [r.item for r in report] == list(range(5))
    assert [r.state for r in report] == [SUCCEEDED, SUCCEEDED, FAILED, FAILED, SUCCEEDED]
    for row in report:
        assert row.start is not None and row.end is not None and row.start <= row.end, row
        assert row.attempts == 1
        assert row.image_digest.startswith("sha256:") and row.image == job.manifest.image
    lost = report[3]
    assert lost.peak_memory is None and "exit" in lost.reasons[-1] and "7" in lost.reasons[-1]
    assert report[2].error == "ValueError: bad input 2"
    assert report[0].peak_memory > 1_000_000 and report[0].host
    frame = report.to_pandas()
    assert list(frame["item"]) == list(range(5)) and (frame["end"] >= frame["start"]).all()

    path = report.plot(str(tmp_path / "timeline.png"))
    assert count_bars(path) == job.manifest.n_tasks == 5
    assert "lost" not in report.text() and "exited with code 7" in report.text()


def test_progress_bar_ends_on_the_counts_of_status(local, engine, capsys):
    job = spmd.Knot(work, config=local, memory="256MiB").map([0, 1, 2, 4], chunksize=1)
    assert job.wait(300, progress=True)
    err = capsys.readouterr().err
    shown = re.findall(r"done=(\d+) failed=(\d+) running=(\d+)", err)
    assert shown, err
    status = job.status()
    assert tuple(map(int, shown[-1])) == (status["SUCCEEDED"], status["FAILED"], status["RUNNING"])
    assert tuple(map(int, shown[-1])) == (3, 1, 0)
    assert "4/4" in err and "work" in err


def test_progress_is_off_under_ci_or_without_a_terminal(monkeypatch):
    from spmd.client import progress
    monkeypatch.setenv("CI", "true")
    assert progress.enabled(None) is False and progress.enabled(True) is True
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert progress.enabled(None) is False


def flaky(x):
    if os.environ["SPMD_ATTEMPT"] == "1":
        raise RuntimeError(f"flaky on attempt 1 of {x}")
    return x


def test_report_says_why_each_attempt_ended(local, engine):
    job = spmd.Knot(flaky, config=local, memory="256MiB", retries=1).map([4])
    assert job.results(300, progress=False) == [4]
    [row] = job.report()
    assert row.attempts == 2 and row.state == SUCCEEDED
    assert row.reasons == ("raised RuntimeError: flaky on attempt 1 of 4; retried", "succeeded")
