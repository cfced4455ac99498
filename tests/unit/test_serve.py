"""A warm container's server (spmd.task.serve) in this process: what it does before its first task."""
import os
import socket

from spmd.stores.directory import DirectoryStore
from spmd.task import serve, worker


def test_the_server_listens_before_it_loads_the_job(tmp_path, monkeypatch):
    # The runner connects and sends the first task while the job loads, so the socket must
    # accept a connection by the time load_job runs.
    DirectoryStore(tmp_path / "store")
    monkeypatch.setenv("SPMD_STORE_URL", (tmp_path / "store").as_uri())
    monkeypatch.setenv("SPMD_JOB_ID", "job-1")
    path = str(tmp_path / "s.sock")
    seen = []

    def load_job(store, job_id):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            seen.append("accepted")
        except OSError as exc:
            seen.append(f"refused: {exc}")
        finally:
            probe.close()

    monkeypatch.setattr(worker, "load_job", load_job)
    server = serve.Server(path, ["python3", *serve.WORKER])
    try:
        assert seen == ["accepted"]
    finally:
        server.listener.close()
        os.unlink(path)
