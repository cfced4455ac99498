"""The local store: the directory and apache-libcloud's local driver, no Docker needed."""
import threading

import pytest

from spmd.errors import ObjectNotFound
from spmd.task.worker import open_store
from spmd.stores.directory import DirectoryStore


@pytest.fixture
def store(tmp_path):
    return DirectoryStore(tmp_path / "s")


def test_round_trip_range_and_missing(store):
    store.put("a/b/c.bin", b"0123456789")
    assert store.get("a/b/c.bin") == b"0123456789"
    assert store.get("a/b/c.bin", 2, 5) == b"234"
    assert store.get("a/b/c.bin", 8) == b"89"
    assert store.exists("a/b/c.bin") and not store.exists("a/b/nope")
    with pytest.raises(ObjectNotFound) as info:
        store.get("a/b/nope")
    assert isinstance(info.value, KeyError) and info.value.key == "a/b/nope"


def test_empty_and_large_objects(store):
    store.put("empty", b"")
    assert store.get("empty") == b""
    big = bytes(range(256)) * (60 * 2**20 // 256)
    store.put("big", big)
    assert store.get("big") == big
    assert store.get("big", 50 * 2**20, 50 * 2**20 + 4) == big[50 * 2**20:50 * 2**20 + 4]


def test_list_is_sorted_scoped_and_complete(store):
    for i in range(1500):
        store.put(f"jobs/j1/output/{i:06d}.pkl", b"x")
    store.put("jobs/j10/output/000000.pkl", b"y")
    store.put("jobs/j1/manifest.json", b"{}")
    keys = list(store.list("jobs/j1/output/"))
    assert len(keys) == 1500 and keys == sorted(keys)
    assert "jobs/j10/output/000000.pkl" not in keys
    assert len(list(store.list("jobs/j1"))) == 1502  # a bare prefix matches j1 and j10
    assert store.delete_prefix("jobs/j1/") == 1501
    assert list(store.list("jobs/")) == ["jobs/j10/output/000000.pkl"]
    store.delete("jobs/never")  # no error


def test_put_is_atomic_for_readers(store):
    old, new = b"a" * 5_000_000, b"b" * 5_000_000
    store.put("k", old)
    seen = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            data = store.get("k")
            seen.add((data[:1] + data[-1:], len(data)))

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(20):
        store.put("k", new)
        store.put("k", old)
    stop.set()
    thread.join()
    assert seen and seen <= {(b"aa", 5_000_000), (b"bb", 5_000_000)}
    assert not any(".tmp-" in k for k in store.list(""))


def test_opened_by_url_through_the_plugin_registry(store):
    store.put("x", b"1")
    again = open_store(store.url)
    assert isinstance(again, DirectoryStore) and again.get("x") == b"1"


def test_keys_cannot_escape_the_store(store):
    with pytest.raises(Exception, match="invalid key"):
        store.put("../outside", b"x")


def test_reading_and_deleting_leave_nothing_in_the_temporary_folder(store, tmp_path, monkeypatch):
    """libcloud's local driver leaves a <sha256>.lock in the temporary folder for every object
    it reads or deletes; a long job would leave one per object, forever."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    for i in range(20):
        store.put(f"jobs/j1/output/{i:06d}.pkl", b"x" * i)
    assert [store.get(f"jobs/j1/output/{i:06d}.pkl") for i in (0, 5)] == [b"", b"x" * 5]
    assert store.exists("jobs/j1/output/000003.pkl")
    assert store.delete_prefix("jobs/j1/") == 20
    assert list(scratch.iterdir()) == []
    assert not (store.path("jobs/j1")).exists()  # empty folders go with their last object
    with pytest.raises(ObjectNotFound):
        store.get("jobs/j1/output/000000.pkl")
