"""spmd doctor on the local backend: the real engine, disk and base image; a broken store."""
from spmd.client import doctor
from spmd.cli import main
from spmd.config import resolve


def test_a_healthy_machine_passes_every_check(tmp_path):
    checks = list(doctor.run(resolve({"backend": "local", "store_dir": str(tmp_path / "store")})))
    assert [c.name for c in checks] == ["backend", "store", "engine", "disk", "base image"]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert "Docker" in checks[2].detail and "Python 3.11" in checks[4].detail


def test_a_store_that_cannot_be_made_fails_with_the_fix_and_exit_1(monkeypatch, capsys):
    monkeypatch.setenv("SPMD_STORE_DIR", "/proc/spmd-doctor/store")
    assert main(["doctor", "--backend", "local"]) == 1
    out = capsys.readouterr().out
    assert "FAIL store: " in out and "/proc/spmd-doctor" in out
    assert "fix: make the store's place exist and writable" in out
    assert "ok   engine: Docker" in out  # the checks after it still ran
