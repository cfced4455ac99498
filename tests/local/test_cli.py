"""The spmd command against a real job."""
import subprocess
import sys

import pytest

import spmd

pytestmark = pytest.mark.docker


def spmd_cli(*args, env_store):
    return subprocess.run([sys.executable, "-m", "spmd.cli", *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "SPMD_STORE_DIR": env_store}, timeout=120)


def shout(x):
    print(f"shouting {x}", flush=True)
    return x.upper()


def test_status_and_logs_of_a_job(local, store_dir, engine):
    job = spmd.Knot(shout, config=local).map(["a", "b"], chunksize=1)
    job.wait(300)
    status = spmd_cli("status", job.id, env_store=store_dir)
    assert status.returncode == 0, status.stderr
    assert "succeeded=2" in status.stdout and job.id in status.stdout
    logs = spmd_cli("logs", job.id, "1", env_store=store_dir)
    assert "shouting b" in logs.stdout


def test_config_shows_the_source_and_errors_are_clean(store_dir, tmp_path):
    shown = spmd_cli("config", env_store=store_dir)
    assert f"store_dir = '{store_dir}'  # environment" in shown.stdout
    missing = spmd_cli("status", "no-such-job", env_store=store_dir)
    assert missing.returncode == 2
    assert "no job 'no-such-job'" in missing.stderr and "Traceback" not in missing.stderr
