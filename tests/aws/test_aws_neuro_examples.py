"""The README's neuroimaging examples with ``--backend aws`` on the end-to-end stack (moto's
S3 and Batch, the real registry, tasks in Docker): run in this process, since the harness
that bridges moto is installed here, with the stack's settings as ``SPMD_*`` variables (as a
user's environment or profile would give them). Each must exit 0 and print its check.

The DIPY pipeline also runs on data where it lives: a simulated dataset in a public bucket
(read anonymously, as OpenNeuro's is) and derivatives published by the tasks to a bucket
anyone may write, so no IAM grant is involved."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(example: str, argv: list[str], e2e_config, base_image, monkeypatch, capsys) -> str:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    for key, value in e2e_config.items():
        monkeypatch.setenv("SPMD_" + key.upper(), str(value))
    monkeypatch.setenv("SPMD_BASE_IMAGE", base_image)
    module = importlib.import_module(example)
    code = module.main(argv + ["--backend", "aws"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert " on aws" in out, out
    return out


@pytest.mark.parametrize("example, check", [
    ("dipy_pipeline", "results agree with the in-process run (1 subject)"),
    ("mrtrix_command", "MRtrix3 agrees with DIPY (1 subject)"),
    ("study", "the study agrees with the in-process pipeline (1 subject)"),
])
def test_example_on_aws(example, check, e2e_config, base_image, monkeypatch, capsys):
    out = _run(example, ["--subjects", "1"], e2e_config, base_image, monkeypatch, capsys)
    assert check in out, out


def test_dipy_pipeline_on_aws_reads_a_bucket_and_publishes_to_another(
        e2e_config, base_image, monkeypatch, capsys):
    from spmd.testing.buckets import Bucket
    monkeypatch.syspath_prepend(str(EXAMPLES.parent / "tests" / "examples"))
    import neuro_checks
    data, derivatives = Bucket.create("spmd-openneuro"), Bucket.create("spmd-derivatives", writable=True)
    objects = neuro_checks.put_dataset(data, "ds-sim/", 2)  # the map reads the first only
    out = _run("dipy_pipeline", [
        "--subjects", "1", "--data", data.url("ds-sim/"), "--anon", "--endpoint-url", data.endpoint,
        "--outputs", derivatives.url("dti/{subject}/"), "--outputs-anon"],
        e2e_config, base_image, monkeypatch, capsys)
    assert "results and derivatives agree with the in-process run (1 subject)" in out, out
    # the task read the bucket and wrote the other: no byte of the data went through the client
    assert neuro_checks.uploads(out) == (0, 0, 0, 1, neuro_checks.subject_bytes(objects, 1))
    neuro_checks.check_derivatives(derivatives, "dti/", out, 1)
