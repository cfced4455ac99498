"""The README's neuroimaging examples, run as a newcomer runs them (a subprocess, 2 subjects,
local Docker): each must exit 0 and print its check, which compares the containers' results
with an in-process computation (DIPY) or with DIPY's FA (MRtrix3). The DIPY pipeline also
runs on data where it lives: a simulated dataset in a bucket on moto's S3 server, read
anonymously as OpenNeuro's is, with derivatives published to another bucket."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import neuro_checks

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUBJECTS = 2


def _require_neuro() -> None:
    missing = [m for m in ("dipy", "nibabel") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{missing} missing: the examples need the neuro extra "
                    "(scripts/setup.sh installs it; or .venv/bin/pip install -e '.[neuro]')",
                    pytrace=False)


def _run(script: str, tmp_path: Path, engine, *args: str) -> subprocess.CompletedProcess:
    _require_neuro()
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    env = {**os.environ, "SPMD_BACKEND": "local", "SPMD_STORE_DIR": str(store),
           "SPMD_USER_CONFIG": str(tmp_path / "no-user-config.toml")}
    argv = list(args) or ["--subjects", str(SUBJECTS)]
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *argv],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_dipy_pipeline_agrees_with_the_in_process_run(tmp_path, engine):
    out = _run("dipy_pipeline.py", tmp_path, engine).stdout
    assert f"results agree with the in-process run ({SUBJECTS} subjects)" in out
    # the subjects were data references: every byte of them was uploaded by this first map
    # into the fresh store, and each subject's summary came back
    assert "uploaded 0 of" not in out
    assert [line.split(":")[0].strip() for line in out.splitlines() if "mean FA" in line] == \
        [f"sub-{i + 1:02d}" for i in range(SUBJECTS)]


def test_dipy_pipeline_on_a_bucket_publishes_derivatives_to_another(tmp_path, engine):
    _require_neuro()
    from spmd.testing.buckets import Bucket
    data, derivatives = Bucket.create("spmd-openneuro"), Bucket.create("spmd-derivatives", writable=True)
    objects = neuro_checks.put_dataset(data, "ds-sim/", SUBJECTS + 1)  # one more than read
    done = _run("dipy_pipeline.py", tmp_path, engine, "--subjects", str(SUBJECTS),
                "--data", data.url("ds-sim/"), "--anon", "--endpoint-url", data.endpoint,
                "--outputs", derivatives.url("dti/{subject}/"), "--outputs-anon")
    out = done.stdout
    assert f"results and derivatives agree with the in-process run ({SUBJECTS} subjects)" in out, out
    assert f"{SUBJECTS} subjects in {data.url('ds-sim/')} (listed, not read)" in out
    # nothing of the data went through the client: no bytes uploaded, two folders read remotely
    assert neuro_checks.uploads(out) == (
        0, 0, 0, SUBJECTS, neuro_checks.subject_bytes(objects, SUBJECTS))
    neuro_checks.check_derivatives(derivatives, "dti/", out, SUBJECTS)
    # the local rule: the scheduler fetched each subject once into the store's read-only cache
    cached = [p for p in (tmp_path / "store").glob("**/data/urls/*/sub-*") if p.is_dir()]
    assert sorted(p.name for p in cached) == [f"sub-{i + 1:02d}" for i in range(SUBJECTS)]


def test_mrtrix_command_fa_agrees_with_dipy(tmp_path, engine):
    out = _run("mrtrix_command.py", tmp_path, engine).stdout
    assert f"MRtrix3 agrees with DIPY ({SUBJECTS} subjects)" in out
    assert out.count("exit 0, fa.nii.gz downloaded") == SUBJECTS
    assert out.count(": ok") == SUBJECTS


def test_study_chains_two_steps_and_a_group_step_with_a_licence_secret(tmp_path, engine):
    out = _run("study.py", tmp_path, engine).stdout
    assert f"the study agrees with the in-process pipeline ({SUBJECTS} subjects)" in out, out
    assert "step 1 end -> step 2 start per subject" in out
