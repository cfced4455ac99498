"""A job's inputs kept in memory (/dev/shm) while it runs: DirectoryStore.keep_in_memory."""
import os

import pytest

from spmd import layout
from spmd.stores import directory
from spmd.stores.directory import DirectoryStore


@pytest.fixture
def memory_root(tmp_path, monkeypatch):
    """A memory root of the test's own (on a real tmpfs when /dev/shm is one)."""
    root = tmp_path / "shm"
    root.mkdir()
    monkeypatch.setattr(directory, "MEMORY_ROOT", root)
    return root


def test_a_jobs_inputs_are_written_to_memory_and_read_back(tmp_path, memory_root):
    store = DirectoryStore(tmp_path / "store")
    prefix = layout.input_prefix("job-1")
    assert store.keep_in_memory(prefix, 3 * 2**20)
    store.put_parts(layout.shard_key("job-1", 0), [b"a" * 100, memoryview(b"b" * 50)])
    held = store.in_memory(prefix)
    assert held is not None and held.is_relative_to(memory_root / f"spmd-{os.getuid()}")
    assert (held / "00000.bin").read_bytes() == b"a" * 100 + b"b" * 50
    assert store.get(layout.shard_key("job-1", 0)) == b"a" * 100 + b"b" * 50
    assert oct((memory_root / f"spmd-{os.getuid()}").stat().st_mode & 0o777) == "0o700"
    # the job's other objects stay on disk
    store.put(layout.manifest_key("job-1"), b"{}")
    assert not store.path(layout.manifest_key("job-1")).resolve().is_relative_to(memory_root)
    assert layout.shard_key("job-1", 0) in list(store.list("jobs/job-1/"))
    store.release_memory(prefix)
    assert not held.exists()
    assert store.in_memory(prefix) is None
    assert list(store.list("jobs/job-1/")) == [layout.manifest_key("job-1")]


def test_too_much_for_memory_stays_on_disk(tmp_path, memory_root, monkeypatch):
    store = DirectoryStore(tmp_path / "store")
    free = os.statvfs(memory_root).f_bavail * os.statvfs(memory_root).f_frsize
    assert not store.keep_in_memory(layout.input_prefix("big"), int(free * 0.3))
    monkeypatch.setattr(directory, "MEMORY_CAP", 1000)
    assert not store.keep_in_memory(layout.input_prefix("capped"), 1001)
    assert store.in_memory(layout.input_prefix("big")) is None
    store.put(layout.shard_key("big", 0), b"x")
    assert store.get(layout.shard_key("big", 0)) == b"x"


def test_a_memory_folder_of_another_user_is_not_used(tmp_path, memory_root):
    theirs = memory_root / f"spmd-{os.getuid()}"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    store = DirectoryStore(tmp_path / "store")
    assert not store.keep_in_memory(layout.input_prefix("job-1"), 10)
    assert store.in_memory(layout.input_prefix("job-1")) is None


def test_release_never_follows_a_link_out_of_the_users_memory_folder(tmp_path, memory_root):
    store = DirectoryStore(tmp_path / "store")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep")
    folder = store.path(layout.input_prefix("job-1").rstrip("/"))
    folder.parent.mkdir(parents=True)
    os.symlink(precious, folder)  # planted in the store
    store.release_memory(layout.input_prefix("job-1"))
    store.delete_prefix("jobs/job-1/")
    assert (precious / "data").read_text() == "keep"


def test_a_link_to_inputs_lost_in_a_restart_is_not_listed(tmp_path, memory_root):
    import shutil
    store = DirectoryStore(tmp_path / "store")
    assert store.keep_in_memory(layout.input_prefix("job-1"), 10)
    store.put(layout.shard_key("job-1", 0), b"x")
    store.put(layout.manifest_key("job-1"), b"{}")
    shutil.rmtree(memory_root)  # what a restart does to a tmpfs
    assert list(store.list("jobs/")) == [layout.manifest_key("job-1")]


def test_deleting_a_job_frees_its_inputs_memory(tmp_path, memory_root):
    store = DirectoryStore(tmp_path / "store")
    assert store.keep_in_memory(layout.input_prefix("job-1"), 10)
    store.put(layout.shard_key("job-1", 0), b"x")
    held = store.in_memory(layout.input_prefix("job-1"))
    store.delete_prefix("jobs/")
    assert not held.exists()
    assert not os.path.lexists(store.path("jobs/job-1/input"))

