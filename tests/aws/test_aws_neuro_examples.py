"""The README's neuroimaging examples with ``--backend aws`` on the end-to-end stack (moto's
S3 and Batch, the real registry, tasks in Docker): run in this process, since the harness
that bridges moto is installed here, with the stack's settings as ``SPMD_*`` variables (as a
user's environment or profile would give them). Each must exit 0 and print its check."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("example, check", [
    ("dipy_pipeline", "results agree with the in-process run (1 subject)"),
    ("mrtrix_command", "MRtrix3 agrees with DIPY (1 subject)"),
])
def test_example_on_aws(example, check, e2e_config, base_image, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    for key, value in e2e_config.items():
        monkeypatch.setenv("SPMD_" + key.upper(), str(value))
    monkeypatch.setenv("SPMD_BASE_IMAGE", base_image)
    module = importlib.import_module(example)
    code = module.main(["--subjects", "1", "--backend", "aws"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert " on aws" in out and check in out, out
