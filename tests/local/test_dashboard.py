"""spmd dashboard against real jobs on the local Docker backend: the real server over HTTP
(token, cross-site POST, cancel, no environment or secret in any answer) and a real headless
Chromium that runs the live job page's script and draws its timeline."""
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import spmd
from spmd.dashboard.server import Dashboard

pytestmark = pytest.mark.docker

ENV_VALUE = "env-value-never-shown-4e1d"
SECRET_VALUE = "secret-value-never-shown-9c2a"


def work(x):
    import os
    import time
    if x == 2:
        print("reading subject 2", flush=True)
        raise ValueError(f"bad input {x}")
    if x >= 10:  # a long task, for the live page and cancel
        print(f"started long item {x}", flush=True)
        time.sleep(120)
    return x * 10 + len(os.environ.get("STUDY_KEY", ""))


class Client:
    """HTTP to the dashboard, keeping every answer's body to search for leaks."""

    def __init__(self, board):
        self.board, self.base, self.bodies = board, f"http://127.0.0.1:{board.port}", []

    def request(self, path, *, token=True, method="GET", headers=None):
        if token:
            path += ("&" if "?" in path else "?") + f"token={self.board.token}"
        request = urllib.request.Request(self.base + path, method=method, headers=headers or {},
                                         data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        self.bodies.append(body)
        return status, body

    def json(self, path, **options):
        status, body = self.request(path, **options)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


@pytest.fixture
def board(local):
    knot = spmd.Knot(work, config=local, memory="256MiB", env={"STUDY_KEY": ENV_VALUE},
                     secrets=[spmd.Secret("API_KEY", value=SECRET_VALUE)])
    dashboard = Dashboard(knot.backend).start()
    yield knot, dashboard, Client(dashboard)
    dashboard.stop()


def chromium_dom(url, tmp_path, *flags):
    """The DOM of url after Chromium ran its scripts (a few seconds of virtual time)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the browser tests need Debian's chromium (scripts/setup.sh installs it)"
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *flags,
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=4000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120).stdout


def test_jobs_and_a_finished_job_over_http(board, engine, tmp_path):
    knot, dashboard, client = board
    job = knot.map(range(4), chunksize=1)
    assert job.wait(300, progress=False)

    assert client.request("/", token=False)[0] == 403
    assert client.request(f"/api/jobs/{job.id}/live", token=False)[0] == 403
    assert client.request("/api/jobs?token=wrong", token=False)[0] == 403
    assert client.request("/api/jobs", headers={"Host": f"evil.example:{dashboard.port}"})[0] == 403
    status, page = client.request("/")
    assert status == 200 and b"spmd jobs" in page

    [listed] = client.json("/api/jobs")
    one = client.json(f"/api/jobs/{job.id}")
    assert {**one, "age": 0} == {**listed, "age": 0}
    assert listed["id"] == job.id and listed["name"] == "work" and listed["backend"] == "local"
    assert listed["counts"]["SUCCEEDED"] == 3 and listed["counts"]["FAILED"] == 1
    assert listed["done"] and listed["duration"] > 0 and listed["cost"] is None

    live = client.json(f"/api/jobs/{job.id}/live")
    assert live["done"] and live["counts"]["FAILED"] == 1
    failures = live["sections"]["failures"]
    assert 'data-cause="user error" data-count="1"' in failures and "ValueError" in failures
    assert "reading subject 2" in failures  # the group's log tail
    assert len(re.findall(r'<rect class="bar SUCCEEDED"', live["sections"]["timeline"])) == 3
    assert "256.0MiB" in live["sections"]["memory"]

    item = client.json(f"/api/jobs/{job.id}/items/1")
    assert item["row"]["state"] == "SUCCEEDED" and item["provenance"]["attempt"] == 1
    assert item["row"]["peak_memory"] > 0 and item["memory_limit"] == 256 * 2**20
    part = client.json(f"/api/jobs/{job.id}/items/2/log?offset=0")
    assert "reading subject 2" in part["text"] and part["ended"] and part["length"] > 0
    rest = client.json(f"/api/jobs/{job.id}/items/2/log?offset={part['length']}")
    assert rest["text"] == "" and rest["length"] == part["length"]
    status, report = client.request(f"/report/{job.id}.html")
    assert status == 200 and report.count(b'class="group"') == 1
    assert client.request("/api/jobs/no-such-job/live")[0] == 404

    for body in client.bodies:
        assert ENV_VALUE.encode() not in body and SECRET_VALUE.encode() not in body
        assert b"STUDY_KEY" not in body and b"API_KEY" not in body

    # the HTML report renders in the browser with no network (every request to a dead proxy)
    path = job.report().to_html(str(tmp_path / "run.html"))
    dom = chromium_dom(f"file://{path}", tmp_path, "--proxy-server=http://127.0.0.1:9",
                       "--proxy-bypass-list=<-loopback>")
    assert len(re.findall(r'<rect class="bar SUCCEEDED"', dom)) == 3
    assert dom.count('<tr class="row') == 4 and "bad input 2" in dom


def test_the_live_page_in_chromium_then_cancel(board, engine, tmp_path):
    knot, dashboard, client = board
    job = knot.map([0, 10, 11], chunksize=1)
    deadline = time.monotonic() + 240
    while job.status()["RUNNING"] < 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert job.status()["RUNNING"] == 2

    dom = chromium_dom(f"{client.base}/job/{job.id}?token={dashboard.token}", tmp_path)
    assert 'id="timeline"' in dom
    running = re.findall(r'<rect class="bar RUNNING"', dom)  # drawn by the page's script
    assert len(running) == 2, dom[:2000]
    assert "running, updated" in dom

    # the page follows a running item's log from where it last read (local keeps an attempt's
    # log in the store once the attempt ends)
    first = client.json(f"/api/jobs/{job.id}/items/1/log?offset=0")
    assert not first["ended"] and first["state"] == "RUNNING"

    cancel = f"/api/jobs/{job.id}/cancel"
    header = {"X-Spmd-Token": dashboard.token}
    assert client.request(cancel, method="POST")[0] == 403  # a token in the URL is not enough
    cross = {**header, "Origin": "http://evil.example"}
    assert client.request(cancel, method="POST", headers=cross, token=False)[0] == 403
    assert client.request(cancel, method="POST", token=False,
                          headers={**header, "Sec-Fetch-Site": "cross-site"})[0] == 403
    assert job.status()["RUNNING"] == 2  # none of those cancelled anything
    same = {**header, "Origin": client.base}
    answer = client.json(cancel, method="POST", headers=same, token=False)
    assert answer["cancelled"]
    deadline = time.monotonic() + 60
    while job.status()["CANCELLED"] < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.status()["CANCELLED"] == 2 and job.status()["SUCCEEDED"] == 1
    later = client.json(f"/api/jobs/{job.id}/items/1/log?offset={first['length']}")
    assert later["ended"] and later["length"] == first["length"] + len(later["text"].encode())
    assert "started long item 10" in later["text"]
    live = client.json(f"/api/jobs/{job.id}/live")
    assert live["done"] and live["counts"]["CANCELLED"] == 2
    for body in client.bodies:
        assert ENV_VALUE.encode() not in body and SECRET_VALUE.encode() not in body
