"""The conformance kit on the example plugin's "process" backend (no Docker at all)."""
import pytest

import spmd.testing


class TestProcess(spmd.testing.BackendContract):
    @pytest.fixture
    def spmd_backend_name(self):
        return "process"

    @pytest.fixture
    def spmd_backend_config(self, tmp_path):
        # A store of this test's own; 2 CPUs, so a task of 2 vcpus runs alone.
        return {"store_dir": str(tmp_path / "store"), "max_vcpus": 2}
