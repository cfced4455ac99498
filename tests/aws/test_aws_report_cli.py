"""The run report and the job commands on the AWS backend (moto's Batch runs real containers)."""
import json
import os
import time

import pytest

from spmd import cli
from spmd.batch_queue import FAILED, SUCCEEDED

pytestmark = pytest.mark.docker


def shout_or_die(word):
    print(f"hello from the task: {word}", flush=True)
    if word == "die":
        os._exit(3)  # no output: a lost task
    return word.upper()


@pytest.fixture(scope="module")
def aws_job(aws_knot):
    job = aws_knot(shout_or_die, retries=0).map(["a", "b", "die"], chunksize=1)
    assert job.wait(300, progress=False)
    deadline = time.monotonic() + 60  # the states follow the outputs a moment later
    while job.status()["FAILED"] + job.status()["SUCCEEDED"] < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    return job


@pytest.fixture
def lab(tmp_path, monkeypatch, e2e_config):
    """An aws profile 'lab' of the end-to-end stack in spmd.toml of the working directory."""
    lines = ["[profiles.lab]", 'backend = "aws"'] + [
        f"{key} = {json.dumps(value)}" for key, value in e2e_config.items()]
    (tmp_path / "spmd.toml").write_text("\n".join(lines) + "\n")
    user = tmp_path / "user-config.toml"  # a project file may set the bucket in a trusted folder
    user.write_text(f'trusted_projects = ["{tmp_path}"]\n')
    monkeypatch.setenv("SPMD_USER_CONFIG", str(user))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_report_has_every_item_the_lost_one_and_a_cost(aws_job, tmp_path):
    from plotcheck import count_bars
    report = aws_job.report()
    assert [r.item for r in report] == [0, 1, 2]
    assert [r.state for r in report] == [SUCCEEDED, SUCCEEDED, FAILED]
    for row in report:
        assert row.start is not None and row.start <= row.end, row
        assert row.image == aws_job.manifest.image and row.image_digest.startswith("sha256:")
    assert report[2].peak_memory is None and "3" in report[2].reasons[-1]
    cost = report.cost
    assert cost is not None and cost.dollars > 0 and cost.requests > 0
    assert cost.vcpu_seconds == pytest.approx(sum(r.duration for r in report.tasks()) * report.vcpus)
    assert "estimate" in str(cost) and "2025-01" in cost.prices_as_of
    assert count_bars(report.plot(str(tmp_path / "t.png"))) == 3


def test_job_commands_on_aws(aws_job, lab, capsys):
    assert cli.main(["--profile", "lab", "jobs"]) == 0
    assert any(line.startswith(aws_job.id) and " aws " in line
               for line in capsys.readouterr().out.splitlines())
    assert cli.main(["--profile", "lab", "results", aws_job.id, "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [(r["ok"], r.get("value")) for r in rows] == [(True, "A"), (True, "B"), (False, None)]
    assert cli.main(["--profile", "lab", "logs", aws_job.id, "1"]) == 0
    assert "hello from the task: b" in capsys.readouterr().out
    assert cli.main(["--profile", "lab", "report", aws_job.id]) == 1
    assert "estimated cost $" in capsys.readouterr().out
    assert cli.main(["--profile", "lab", "status", "no-such-job"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spmd: error: no job 'no-such-job' in s3://") and err.count("\n") == 1


def test_clean_removes_an_aws_job_from_the_bucket(aws_knot, lab, capsys):
    job = aws_knot(shout_or_die).map(["x"])
    assert job.results(timeout=300, progress=False) == ["X"]
    deadline = time.monotonic() + 60
    while job.status()["SUCCEEDED"] < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cli.main(["--profile", "lab", "clean", job.id]) == 0
    assert f"removed job {job.id}" in capsys.readouterr().out
    assert list(job.backend.store.list(f"jobs/{job.id}/")) == []
    assert cli.main(["--profile", "lab", "status", job.id]) == 2


def test_the_dashboard_serves_an_aws_job(aws_job):
    """spmd dashboard over the bucket and Batch (spmd.dashboard; its own tests are local)."""
    import urllib.request
    from spmd.dashboard.server import Dashboard
    board = Dashboard(aws_job.backend).start()

    def get(path):
        url = f"http://127.0.0.1:{board.port}{path}?token={board.token}"
        with urllib.request.urlopen(url, timeout=120) as answer:
            return json.loads(answer.read())
    try:
        listed = get(f"/api/jobs/{aws_job.id}")
        assert listed["backend"] == "aws" and listed["cost"].startswith("$")
        assert (listed["counts"]["SUCCEEDED"], listed["counts"]["FAILED"]) == (2, 1)
        live = get(f"/api/jobs/{aws_job.id}/live")
        assert 'data-count="1"' in live["sections"]["failures"]
        assert "hello from the task: die" in live["sections"]["failures"]  # the group's log tail
        assert live["sections"]["timeline"].count('<rect class="bar') == 3
        part = get(f"/api/jobs/{aws_job.id}/items/1/log")
        assert "hello from the task: b" in part["text"] and part["ended"]
    finally:
        board.stop()
