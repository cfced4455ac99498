"""A job never hangs (no Docker): a damaged result fails only its own items, a store that keeps
failing ends the unresolved futures with WatchFailed within the watcher's budget."""

import spmd
from spmd.client import job as job_module
from spmd import layout
from spmd.testing import functions

WAIT = 30


def test_a_damaged_output_fails_its_own_items_and_no_other(knot):
    job = knot(functions.square).map(range(6), chunksize=2)
    assert job.results(timeout=WAIT) == [0, 1, 4, 9, 16, 25]
    store = job.backend.store
    key = layout.output_key(job.id, 1)
    store.put(key, store.get(key)[:40])  # truncated, as by a disk error after the job
    again = spmd.attach(job.id, backend="memory", config={"memory_store": store.name})
    damaged = [again.futures[i].exception(timeout=WAIT) for i in (2, 3)]
    assert all(isinstance(e, spmd.ResultDamaged) for e in damaged), damaged
    assert key in str(damaged[0]) and "damaged" in str(damaged[0])
    assert [again.futures[i].result(timeout=WAIT) for i in (0, 1, 4, 5)] == [0, 1, 16, 25]
    rows = again.report().rows
    assert rows[2].state == "FAILED" and rows[2].error.startswith("ResultDamaged")
    assert rows[4].state == "SUCCEEDED"


def test_a_damaged_reused_result_fails_only_the_reused_items(knot):
    first = knot(functions.square).map(range(4), reuse=True)
    first.results(timeout=WAIT)
    second = knot(functions.square).map(range(6), reuse=True)  # 0-3 reused, 4-5 run
    assert second.results(timeout=WAIT) == [0, 1, 4, 9, 16, 25]
    store = second.backend.store
    store.put(layout.reused_key(second.id), b"\x80\x05 not a frame")
    again = spmd.attach(second.id, backend="memory", config={"memory_store": store.name})
    assert isinstance(again.futures[0].exception(timeout=WAIT), spmd.ResultDamaged)
    assert again.futures[5].result(timeout=WAIT) == 25


class _Failing:
    """A store whose listing fails every time, as a disk or a network that stays down."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def list_after(self, prefix, start_after=""):
        raise OSError(5, "Input/output error")


def test_a_store_that_keeps_failing_ends_the_futures_with_watch_failed(knot, monkeypatch):
    monkeypatch.setattr(job_module, "WATCH_FAILURES", 3)
    monkeypatch.setattr(job_module, "WATCH_SECONDS", 0.3)
    queue = knot(functions.square).backend.queue
    queue.hold()  # nothing finishes before the store fails
    job = knot(functions.square).map(range(3), chunksize=1)
    backend = spmd.attach(job.id, backend="memory", config={"memory_store": job.backend.store.name},
                          watch=False).backend
    backend.__dict__["store"] = _Failing(backend.store)
    watched = job_module.Job(backend, job.manifest, job.handle)
    error = watched.futures[0].exception(timeout=WAIT)
    assert isinstance(error, spmd.WatchFailed), error
    assert error.failures >= 3 and "Input/output error" in str(error)
    assert f"spmd.attach({job.id!r})" in str(error)
    queue.release()
    assert job.results(timeout=WAIT) == [0, 1, 4]  # the job itself went on; a new look sees it


def test_a_fault_that_passes_is_retried(knot, monkeypatch):
    monkeypatch.setattr(job_module, "WATCH_FAILURES", 1000)
    queue = knot(functions.square).backend.queue
    queue.hold()
    job = knot(functions.square).map(range(3), chunksize=1)
    store = job.backend.store
    calls = {"n": 0}
    real = store.list_after

    def flaky(prefix, start_after=""):
        calls["n"] += 1
        if calls["n"] <= 3:
            raise OSError(5, "Input/output error")
        return real(prefix, start_after)
    monkeypatch.setattr(store, "list_after", flaky)
    queue.release()
    assert job.results(timeout=WAIT) == [0, 1, 4]
    assert calls["n"] > 3


def test_partial_uploads_of_dead_writers_go_with_the_next_upload(tmp_path):
    import os
    import time

    from spmd import data
    from spmd.scheduling import DirectoryStore
    store = DirectoryStore(tmp_path / "store")
    blobs = store.path("data/sha256/")
    blobs.mkdir(parents=True)
    dead, live = blobs / ".tmp-dead", blobs / ".tmp-live"
    dead.write_bytes(b"x" * 1000)
    live.write_bytes(b"y")
    old = time.time() - 3600
    os.utime(dead, (old, old))
    fetch = store.path("data/urls/abc/.partial-123")
    fetch.mkdir(parents=True)
    (fetch / "half.nii.gz").write_bytes(b"z")
    os.utime(fetch, (old, old))
    source = tmp_path / "input.bin"
    source.write_bytes(b"data")
    report = data.UploadReport()
    data.reference(spmd.File(source), report)
    data.send(store, report)
    assert not dead.exists() and not fetch.exists()
    assert live.exists()  # a write in progress is left alone
    assert report.uploaded_objects == 1
