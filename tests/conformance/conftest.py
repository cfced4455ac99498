"""The conformance runs: one file per backend, each a subclass of ``spmd.testing.BackendContract``.

    test_local.py          the local Docker backend (built in)
    test_process.py        the example plugin examples/spmd-process-backend ("process")
    test_libcloud_store.py spmd.stores.libcloud.LibcloudStore over libcloud's local driver (store part only)
    (AWS)                  the AWS backend on moto runs the same class as
                           ``TestAws(spmd.testing.BackendContract)`` in
                           tests/aws/test_aws_conformance.py, beside the AWS harness whose
                           fixtures (moto endpoint, registry, stack) its config needs

The example plugin must be installed (scripts/setup.sh does it); without it every test here
fails with the command that installs it, rather than quietly testing less.
"""
from __future__ import annotations

from importlib.metadata import entry_points

import pytest

INSTALL = ".venv/bin/pip install -e examples/spmd-process-backend"


@pytest.fixture(scope="session", autouse=True)
def _example_plugin_installed():
    names = {ep.name for ep in entry_points(group="spmd")}
    if "process" not in names:
        pytest.fail(f"the example backend plugin is not installed (no 'process' in the 'spmd' "
                    f"entry-point group; found {sorted(names) or 'none'}). Install it with "
                    f"`{INSTALL}`, as scripts/setup.sh does.", pytrace=False)
