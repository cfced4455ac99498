"""The spmd command against real jobs on the local backend: each command, exit codes, errors."""
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

import spmd

pytestmark = pytest.mark.docker


def spmd_cli(*args, env_store, cwd=None):
    return subprocess.run([sys.executable, "-m", "spmd.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "SPMD_STORE_DIR": env_store}, timeout=120, cwd=cwd)


def shout(x):
    print(f"shouting {x}", flush=True)
    return x.upper()


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    """One real job, items 'a', 'b', 3 (which fails: an int has no upper()), 'd'."""
    store = str(tmp_path_factory.mktemp("clistore"))
    job = spmd.Knot(shout, config={"store_dir": store, "max_vcpus": 2}, memory="256MiB").map(
        ["a", "b", 3, "d"], chunksize=1)
    assert job.wait(300, progress=False)
    return job, store


def test_status_and_logs_of_a_job(finished_job):
    job, store = finished_job
    status = spmd_cli("status", job.id, env_store=store)
    assert status.returncode == 1, status.stderr  # an item failed
    assert "succeeded=3" in status.stdout and "failed=1" in status.stdout and job.id in status.stdout
    logs = spmd_cli("logs", job.id, "1", env_store=store)
    assert logs.returncode == 0 and "shouting b" in logs.stdout
    followed = spmd_cli("logs", job.id, "2", "--follow", env_store=store)
    assert followed.returncode == 1 and "AttributeError" in followed.stdout  # task 2 failed


def test_jobs_lists_the_job_with_its_counts(finished_job):
    job, store = finished_job
    listing = spmd_cli("jobs", env_store=store)
    assert listing.returncode == 0, listing.stderr
    header, *lines = listing.stdout.splitlines()
    assert header.split()[:3] == ["JOB", "NAME", "BACKEND"] and "AGE" in header
    row = next(line for line in lines if line.startswith(job.id)).split()
    assert row[1:8] == ["shout", "local", "0", "0", "3", "1", "0"]
    assert row[8][-1] in "smhd"


def test_results_in_text_and_json(finished_job):
    job, store = finished_job
    text = spmd_cli("results", job.id, env_store=store)
    assert text.returncode == 1  # item 2 failed
    assert text.stdout.splitlines()[:2] == ["0\t'A'", "1\t'B'"]
    assert "2\terror: AttributeError" in text.stdout
    rows = json.loads(spmd_cli("results", job.id, "--json", env_store=store).stdout)
    assert [(r["item"], r["ok"], r.get("value")) for r in rows] == [
        (0, True, "A"), (1, True, "B"), (2, False, None), (3, True, "D")]


def test_report_and_its_plot(finished_job, tmp_path):
    from plotcheck import count_bars
    job, store = finished_job
    png = tmp_path / "t.png"
    report = spmd_cli("report", job.id, "--plot", str(png), env_store=store)
    assert report.returncode == 1, report.stderr
    lines = report.stdout.splitlines()
    assert lines[0].split()[:3] == ["item", "task", "state"]
    assert [line.split()[2] for line in lines[1:5]] == ["SUCCEEDED", "SUCCEEDED", "FAILED", "SUCCEEDED"]
    assert count_bars(str(png)) == 4
    rows = json.loads(spmd_cli("report", job.id, "--json", env_store=store).stdout)["rows"]
    assert all(r["start"] <= r["end"] for r in rows) and rows[2]["error"].startswith("AttributeError")


@pytest.mark.parametrize("command", [["status"], ["results"], ["logs", "0"], ["logs", "0", "-f"],
                                     ["report"], ["cancel"], ["clean"]])
def test_an_unknown_job_is_a_one_line_usage_error(command, store_dir):
    done = spmd_cli(command[0], "no-such-job", *command[1:], env_store=store_dir)
    assert done.returncode == 2
    assert done.stderr.startswith("spmd: error: no job 'no-such-job'") and done.stderr.count("\n") == 1


def test_unknown_profile_or_backend_and_bad_usage(store_dir, tmp_path):
    for args, says in ((["--profile", "nope", "jobs"], "profile 'nope' is not defined"),
                       (["--backend", "nope", "jobs"], "unknown backend 'nope'"),
                       (["clean"], "say what to clean"),
                       (["clean", "--older-than", "7x"], "write it like 7d")):
        done = spmd_cli(*args, env_store=store_dir, cwd=tmp_path)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_help_everywhere(store_dir):
    for args in (["--help"], ["jobs", "--help"], ["results", "--help"], ["logs", "--help"],
                 ["report", "--help"], ["clean", "--help"], ["aws", "--help"], ["aws", "up", "--help"]):
        done = spmd_cli(*args, env_store=store_dir)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: spmd {args[0] if args[0] != '--help' else ''}".rstrip()), args


def test_config_shows_the_source(store_dir):
    shown = spmd_cli("config", env_store=store_dir)
    assert f"store_dir = '{store_dir}'  # environment" in shown.stdout


def test_clean_removes_one_job_and_nothing_else(store_dir, engine):
    config = {"store_dir": store_dir, "max_vcpus": 2}
    knot = spmd.Knot(shout, config=config, memory="256MiB")
    keep, gone = (knot.map([item], reuse=True) for item in ("x", "y"))
    assert keep.wait(300, progress=False) and gone.wait(300, progress=False)
    store = knot.backend.store
    key = keep.manifest.reuse_key
    assert list(store.list("cache/")) == sorted(f"cache/{key}/{job.id}.json" for job in (keep, gone))
    dry = spmd_cli("clean", gone.id, "--dry-run", env_store=store_dir)
    assert dry.returncode == 0 and f"would remove job {gone.id}" in dry.stdout
    assert spmd_cli("status", gone.id, env_store=store_dir).returncode == 0
    # as if its scheduler had died before removing the job's secrets
    left = spmd.secrets.write(store, gone.id, [spmd.Secret("TOKEN", value="left behind")])
    done = spmd_cli("clean", gone.id, env_store=store_dir)
    assert done.returncode == 0 and f"removed job {gone.id}" in done.stdout
    assert not left.exists()
    assert spmd_cli("status", gone.id, env_store=store_dir).returncode == 2
    # Its cached results went with it: a rerun runs "y" again, and still reuses "x".
    assert list(store.list("cache/")) == [f"cache/{key}/{keep.id}.json"]
    assert knot.map(["y"], reuse=True).manifest.n_tasks == 1
    assert knot.map(["x"], reuse=True).manifest.n_tasks == 0
    assert spmd.attach(keep.id, config=config).results(progress=False) == ["X"]
    older = spmd_cli("clean", "--older-than", "0s", "--dry-run", env_store=store_dir)
    assert f"would remove job {keep.id}" in older.stdout and gone.id not in older.stdout


def test_clean_skips_a_running_job(store_dir, engine):
    config = {"store_dir": store_dir, "max_vcpus": 2}
    job = spmd.Knot(time.sleep, config=config, memory="256MiB").map([30])
    try:
        deadline = time.monotonic() + 60
        while job.status()["RUNNING"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        done = spmd_cli("clean", job.id, env_store=store_dir)
        assert done.returncode == 1 and f"spmd cancel {job.id} first" in done.stderr
        assert spmd_cli("status", job.id, env_store=store_dir).returncode == 0
    finally:
        job.cancel()


def test_clean_images_removes_only_unused_labelled_images(engine):
    """On images of this test's own (a unique label), never on other images of the engine."""
    from spmd.images import base as baseimage
    from spmd.cli.clean import clean_images
    mark = f"spmd.test-clean={uuid.uuid4().hex[:8]}"
    key, value = mark.split("=")
    base = baseimage.resolve(None)
    engine.images.build(fileobj=_dockerfile(base), labels={"spmd.managed": "1", key: value},
                        tag=f"spmd-test-clean:{value}-unused", rm=True)
    used = engine.images.build(fileobj=_dockerfile(base, "used"), labels={"spmd.managed": "1", key: value},
                               tag=f"spmd-test-clean:{value}-used", rm=True)[0]
    holder = engine.containers.create(used.id, ["true"])
    try:
        lines = clean_images(time.time() + 60, dry_run=False, label=mark)
        assert lines == [f"removed image spmd-test-clean:{value}-unused"]
        names = {t for image in engine.images.list(filters={"label": mark}) for t in image.tags}
        assert names == {f"spmd-test-clean:{value}-used"}
    finally:
        holder.remove(force=True)
        engine.images.remove(used.id, force=True)


def _dockerfile(base, note=""):
    import io
    return io.BytesIO(f"FROM {base}\nLABEL note={note or 'unused'}\n".encode())


def test_clean_older_than_removes_fetched_inputs_from_before_then(store_dir):
    import os
    import time as clock
    from spmd.scheduling import DirectoryStore
    cache = DirectoryStore(store_dir).path("data/urls/")
    old, new = cache / "a", cache / "b"
    for folder in (old, new):
        (folder / "sub-01").mkdir(parents=True)
        (folder / "sub-01" / "dwi.nii.gz").write_bytes(b"x" * 2_000_000)
    past = clock.time() - 3 * 86400
    os.utime(old, (past, past))
    dry = spmd_cli("clean", "--older-than", "1d", "--dry-run", env_store=store_dir)
    assert "would remove 1 fetched inputs (2.0 MB)" in dry.stdout and old.exists()
    done = spmd_cli("clean", "--older-than", "1d", env_store=store_dir)
    assert done.returncode == 0 and "removed 1 fetched inputs" in done.stdout
    assert not old.exists() and new.exists()
