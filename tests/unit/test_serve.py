"""A warm container's server (spmd.task.serve) in this process: its start and a task's end."""
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


def test_a_tasks_end_is_reported_before_its_staging_folder_is_removed(tmp_path, monkeypatch):
    # The removal is off the task's path to the runner, and done before the server reads
    # its next message, so the next task still finds nothing of this one's.
    from spmd.task import wire
    events = []
    server = serve.Server(str(tmp_path / "s.sock"), ["true"])
    monkeypatch.setattr(server, "send", lambda message: events.append(message["op"]))
    remove = serve.shutil.rmtree
    monkeypatch.setattr(serve.shutil, "rmtree", lambda path, **kwargs: (
        events.append("stage removed"), remove(path, **kwargs)))
    try:
        server.run(wire.run(0, 1, {}, str(tmp_path / "0-a1.log"), 1 << 20))
        stage = server.child["stage"]
        for _ in range(1000):  # bounded: `true` ends at once
            for key, _ in server.selector.select(timeout=1):
                if key.data == "output":
                    server.copy_output()
                elif key.data == "child":
                    server.reap()
            if server.child is None:
                break
        assert events == [wire.STARTED, wire.ENDED, "stage removed"]
        assert not os.path.exists(stage)
    finally:
        server.listener.close()
