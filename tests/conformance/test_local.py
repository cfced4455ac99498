"""The conformance kit on the local Docker backend."""
import pytest

import spmd.testing

pytestmark = pytest.mark.docker


class TestLocal(spmd.testing.BackendContract):
    @pytest.fixture
    def spmd_backend_name(self):
        return "local"

    @pytest.fixture
    def spmd_backend_config(self, tmp_path):
        # A store of this test's own; 2 CPUs, so a task of 2 vcpus runs alone.
        return {"store_dir": str(tmp_path / "store"), "max_vcpus": 2}
