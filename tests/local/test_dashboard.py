"""spmd dashboard against real jobs on the local Docker backend: the real server over HTTP
(token, cross-site POST, no environment or secret in any answer), the HTML report in Chromium
without a network, and the live job page in a headless Chromium driven as a person would:
its counts and timeline follow the job, and Cancel on the page cancels it."""
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

import spmd
from spmd import cli
from spmd.dashboard.server import Dashboard

pytestmark = pytest.mark.docker

ENV_VALUE = "env-value-never-shown-4e1d"
SECRET_VALUE = "secret-value-never-shown-9c2a"


def work(x):
    import os
    import time
    if x < 10:  # a quick item: long enough for the page to see it running first
        time.sleep(3)
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


def test_spmd_dashboard_prints_its_url_and_warns_beyond_this_machine(local, monkeypatch):
    monkeypatch.setenv("SPMD_STORE_DIR", local["store_dir"])
    for host in ("127.0.0.1", "0.0.0.0"):
        server = subprocess.Popen([sys.executable, "-m", "spmd.cli", "dashboard", "--host", host],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = next(line.strip() for line in server.stdout if "token=" in line)
            assert url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(url.replace("/?", "/api/jobs?"), timeout=30) as answer:
                assert json.loads(answer.read()) == []  # an empty store
            with pytest.raises(urllib.error.HTTPError, match="403"):
                urllib.request.urlopen(url.split("?")[0] + "api/jobs", timeout=30)
        finally:
            server.terminate()
            err = server.communicate(timeout=30)[1]
        assert ("the token is then the only protection" in err) == (host == "0.0.0.0"), err


def chromium_dom(url, tmp_path, *flags):
    """The DOM of url after Chromium ran its scripts (a few seconds of virtual time)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the browser tests need Debian's chromium (scripts/setup.sh installs it)"
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *flags,
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=4000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120).stdout


def test_jobs_and_a_finished_job_over_http(board, engine, tmp_path, monkeypatch):
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

    # spmd report JOB --html FILE; the report renders in the browser with no network (every
    # request goes to a dead proxy)
    path = str(tmp_path / "run.html")
    monkeypatch.setenv("SPMD_STORE_DIR", knot.settings.get("store_dir"))
    assert cli.main(["report", job.id, "--html", path]) == 1  # an item failed
    dom = chromium_dom(f"file://{path}", tmp_path, "--proxy-server=http://127.0.0.1:9",
                       "--proxy-bypass-list=<-loopback>")
    assert len(re.findall(r'<rect class="bar SUCCEEDED"', dom)) == 3
    assert dom.count('<tr class="row') == 4 and "bad input 2" in dom


def browser():
    """Headless Chromium driven by chromedriver (Debian's chromium and chromium-driver)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: run scripts/setup.sh (spmd[test] has it)", pytrace=False)
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "run scripts/setup.sh: it installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def shown_counts(page):
    """The counts the job page shows, by state (read in one go: the page redraws them)."""
    return page.execute_script(
        "var c = {}; document.querySelectorAll('#summary .counts span').forEach(function (s) {"
        " c[s.dataset.state] = Number(s.querySelector('b').textContent); }); return c;")


def shown(page, selector, what="length"):
    """How many elements match, or ('text') their text, as the page shows them now."""
    script = ("var e = document.querySelectorAll(arguments[0]); return arguments[1] == 'text' ?"
              " Array.prototype.map.call(e, function (x) { return x.textContent; }).join('\\n') :"
              " e.length;")
    return page.execute_script(script, selector, what)


def test_the_live_page_in_chromium_then_cancel_from_it(board, engine):
    from selenium.webdriver.support.ui import WebDriverWait
    knot, dashboard, client = board
    page = browser()  # started first: a browser takes seconds to start on a loaded machine
    try:
        job = knot.map([1, 2, 10, 11], chunksize=1)  # two quick items (one fails), two long ones
        page.get(f"{client.base}/job/{job.id}?token={dashboard.token}")
        wait = WebDriverWait(page, 240, poll_frequency=0.5)
        first = wait.until(lambda p: shown_counts(p) or False)
        assert first["SUCCEEDED"] == 0 and first["FAILED"] == 0  # nothing ended yet
        # the page follows the job: the counts change and the timeline grows as tasks run
        wait.until(lambda p: shown_counts(p) == {"PENDING": 0, "RUNNING": 2, "SUCCEEDED": 1,
                                                 "FAILED": 1, "CANCELLED": 0})
        wait.until(lambda p: shown(p, "#timeline rect.bar") == 4)
        assert shown(page, "#timeline rect.bar.RUNNING") == 2
        assert shown(page, '#failures .group[data-cause="user error"][data-count="1"]') == 1
        group = shown(page, "#failures .group", "text")
        assert "ValueError" in group and "reading subject 2" in group  # with its log tail

        # the page follows a running item's log from where it last read (local keeps an
        # attempt's log in the store once the attempt ends)
        first = client.json(f"/api/jobs/{job.id}/items/2/log?offset=0")
        assert not first["ended"] and first["state"] == "RUNNING"
        cancel = f"/api/jobs/{job.id}/cancel"
        header = {"X-Spmd-Token": dashboard.token}
        assert client.request(cancel, method="POST")[0] == 403  # a token in the URL is not enough
        cross = {**header, "Origin": "http://evil.example"}
        assert client.request(cancel, method="POST", headers=cross, token=False)[0] == 403
        assert client.request(cancel, method="POST", token=False,
                              headers={**header, "Sec-Fetch-Site": "cross-site"})[0] == 403
        assert job.status()["RUNNING"] == 2  # none of those cancelled anything

        page.find_element("id", "cancel").click()  # as a person would, confirming the dialog
        wait.until(lambda p: p.switch_to.alert).accept()
        wait.until(lambda p: shown_counts(p)["CANCELLED"] == 2)
        assert "ended" in page.find_element("id", "status").text
    finally:
        page.quit()
    assert job.status() == {"PENDING": 0, "RUNNING": 0, "SUCCEEDED": 1, "FAILED": 1, "CANCELLED": 2}
    later = client.json(f"/api/jobs/{job.id}/items/2/log?offset={first['length']}")
    assert later["ended"] and later["length"] == first["length"] + len(later["text"].encode())
    assert "started long item 10" in later["text"]
    for body in client.bodies:
        assert ENV_VALUE.encode() not in body and SECRET_VALUE.encode() not in body
