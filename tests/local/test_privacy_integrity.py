"""The client unpickles only what the job's scheduler signed (spmd.integrity), with a key no
task sees; a restarted scheduler takes its user and store from itself, not from spec.json."""
import os
import pickle
from pathlib import Path

import pytest

import spmd
from spmd import integrity, layout

pytestmark = pytest.mark.docker


def sees_the_key(x):
    """What a task can find of the job's signing key."""
    import glob
    import os
    root = os.environ["SPMD_STORE_URL"][len("file://"):]
    found = glob.glob(f"{root}/spmd/*")
    return found + (os.listdir(f"{root}/spmd/integrity") if "integrity" in str(found) else [])


class Planted:
    def __reduce__(self):
        return (open, (os.environ["PLANTED_MARKER"], "w"))


def test_a_planted_output_is_refused_not_unpickled(local, engine, tmp_path, monkeypatch):
    job = spmd.Knot(sees_the_key, config=local).map([1, 2], chunksize=1)
    seen = job.results(timeout=300)
    store = job.backend.store
    assert not any("integrity" in path for path in sum(seen, [])), seen  # no task sees the key
    assert os.path.exists(Path(local["store_dir"]) / "spmd" / "integrity" / job.id / "key")
    assert integrity.key_of(store, job.id) is not None
    marker = tmp_path / "ran"
    monkeypatch.setenv("PLANTED_MARKER", str(marker))
    output = store.path(layout.output_key(job.id, 0))
    output.write_bytes(pickle.dumps(Planted()))  # written after its task ended
    again = spmd.attach(job.id, config=local)
    with pytest.raises(spmd.ResultDamaged, match="signature differs"):
        again.results(timeout=60)
    assert not marker.exists()
    assert [f.result() for f in list(again)[1:]] == [seen[1]]


def test_a_restarted_scheduler_takes_its_user_and_store_from_itself(local, engine):
    from spmd.scheduling import DirectoryStore, queue_key
    from spmd_local.runner import LocalRunner, socket_dir
    store = DirectoryStore(local["store_dir"])
    spec = {"spec": {"job_id": "job-x", "image": "", "command": [], "n_tasks": 1,
                     "resources": {"memory": 2**28, "vcpus": 1}}, "store_root": "/",
            "uid": 0, "gid": 0}
    runner = LocalRunner(store, "job-x", spec)
    try:
        assert runner.sockets == socket_dir(str(store.root), "job-x")
        assert Path(store.path(queue_key("job-x", "run"))).is_dir()
    finally:
        runner.close()


def test_a_planted_reused_result_is_refused_not_unpickled(local, engine, tmp_path, monkeypatch):
    knot = spmd.Knot(double, config=local)
    assert knot.map([1], reuse=True).results(timeout=300) == [2]
    rerun = knot.map([1, 2], reuse=True)
    assert rerun.results(timeout=300) == [2, 4]
    marker = tmp_path / "ran"
    monkeypatch.setenv("PLANTED_MARKER", str(marker))
    store = rerun.backend.store
    store.path(layout.reused_key(rerun.id)).write_bytes(pickle.dumps(Planted()))
    again = spmd.attach(rerun.id, config=local)
    reused, ran = list(again)
    with pytest.raises(spmd.ResultDamaged, match="changed after the job was submitted"):
        reused.result(timeout=60)
    assert ran.result(timeout=60) == 4 and not marker.exists()


def double(x):
    return 2 * x
