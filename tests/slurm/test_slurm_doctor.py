"""spmd doctor on the test Slurm: commands, controller, partition, MaxArraySize, shared_dir."""
import os

from spmd.client import doctor
from spmd.config import resolve


def test_the_test_cluster_passes_every_check(slurm_config, slurm_max_array_size):
    checks = {c.name: c for c in doctor.run(resolve({**slurm_config, "backend": "slurm"}))}
    assert all(c.ok for c in checks.values()), [c.line() for c in checks.values()]
    assert {"commands", "controller", "partition", "MaxArraySize", "shared_dir"} <= set(checks)
    assert checks["partition"].detail.startswith("debug: 1 nodes")
    assert checks["MaxArraySize"].detail.startswith(str(slurm_max_array_size))


def test_a_shared_dir_others_can_read_fails_with_the_chmod(slurm_config, tmp_path):
    shared = tmp_path / "open"
    shared.mkdir()
    os.chmod(shared, 0o755)
    checks = {c.name: c for c in doctor.run(resolve({**slurm_config, "backend": "slurm",
                                                     "shared_dir": str(shared)}))}
    assert not checks["shared_dir"].ok
    assert f"chmod 700 {shared}" in checks["shared_dir"].detail
