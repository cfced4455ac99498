"""spmd dashboard over a Slurm shared_dir and squeue (spmd.dashboard; its own tests are local)."""
import json
import urllib.request

import spmd
from spmd.dashboard.server import Dashboard
from spmd.testing.fixtures import WAIT
from spmd.testing.functions import fragile


def test_the_dashboard_serves_a_slurm_job(slurm_config):
    job = spmd.Knot(fragile, backend="slurm", config=slurm_config).map([1, 3, 4], chunksize=1)
    job.wait(WAIT, progress=False)
    board = Dashboard(job.backend).start()

    def get(path):
        url = f"http://127.0.0.1:{board.port}{path}?token={board.token}"
        with urllib.request.urlopen(url, timeout=120) as answer:
            return json.loads(answer.read())
    try:
        listed = {j["id"]: j for j in get("/api/jobs")}[job.id]
        assert listed["backend"] == "slurm" and listed["done"]
        assert (listed["counts"]["SUCCEEDED"], listed["counts"]["FAILED"]) == (2, 1)
        live = get(f"/api/jobs/{job.id}/live")
        failures = live["sections"]["failures"]
        assert 'data-cause="user error" data-count="1"' in failures and "no b0 volume" in failures
        assert live["sections"]["timeline"].count('<rect class="bar') == 3
        part = get(f"/api/jobs/{job.id}/items/1/log")
        assert "SubjectError" in part["text"] and part["ended"]
    finally:
        board.stop()
