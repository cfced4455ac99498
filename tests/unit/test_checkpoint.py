"""spmd.checkpoint_dir(): outside a task, and its save and restore through a real store."""
import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap

import pytest

import spmd
from spmd import layout, protocol
from spmd.task import checkpoint
from spmd.stores.directory import DirectoryStore


def test_outside_a_task_it_is_a_folder_of_the_process():
    folder = spmd.checkpoint_dir()
    assert folder.is_dir() and spmd.checkpoint_dir() == folder
    (folder / "x").write_text("kept")
    assert (spmd.checkpoint_dir() / "x").read_text() == "kept"


def test_a_saved_folder_is_restored_whole(tmp_path):
    store = DirectoryStore(tmp_path / "store")
    source = tmp_path / "a"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "model.npy").write_bytes(os.urandom(300_000))
    (source / "empty").mkdir()
    (source / "link").symlink_to(source / "sub" / "model.npy")
    key = layout.checkpoint_key("job", 3)
    size = checkpoint.save(store, key, source)
    assert size == os.path.getsize(store.path(key)) and size > 300_000
    target = tmp_path / "b"
    target.mkdir()
    assert checkpoint.restore(store, key, target)
    assert (target / "sub" / "model.npy").read_bytes() == (source / "sub" / "model.npy").read_bytes()
    assert (target / "empty").is_dir() and not (target / "link").is_symlink()
    assert (target / "link").read_bytes() == (source / "sub" / "model.npy").read_bytes()
    assert not checkpoint.restore(store, layout.checkpoint_key("job", 4), tmp_path / "c")


def test_a_checkpoint_naming_a_path_outside_its_folder_is_refused_a_damaged_one_starts_over(tmp_path):
    store = DirectoryStore(tmp_path / "store")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    store.put("k.tar", data.getvalue())
    (tmp_path / "f").mkdir()
    with pytest.raises(ValueError, match="outside its folder"):
        checkpoint.restore(store, "k.tar", tmp_path / "f")
    assert not (tmp_path / "escaped").exists()
    store.put("damaged.tar", b"not a tar archive " * 100)
    (tmp_path / "g").mkdir()
    assert not checkpoint.restore(store, "damaged.tar", tmp_path / "g")  # starts over
    assert list((tmp_path / "g").iterdir()) == []


def test_a_task_told_to_stop_saves_its_folder_and_exits_75(tmp_path):
    """A process of its own, as a task is: SIGUSR1 while the user's code runs raises
    StopRequested there; the folder is saved and the line the log ends with says why."""
    store = DirectoryStore(tmp_path / "store")
    program = textwrap.dedent(f"""
        import os, signal, sys, time
        import spmd
        from spmd.task import checkpoint
        from spmd.stores.directory import DirectoryStore
        store = DirectoryStore({str(tmp_path / 'store')!r})
        checkpoint.begin(store, "job", 0)
        (spmd.checkpoint_dir() / "step").write_text("7")
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(30)
        except checkpoint.StopRequested as stop:
            print(checkpoint.on_stop(stop.why), file=sys.stderr)
            sys.exit(75)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == protocol.REQUEUE_EXIT, done.stderr
    reason = protocol.requeue_reason(done.stderr)
    assert reason.startswith("requeued (walltime warning), checkpoint ") and " saved" in reason
    with tarfile.open(store.path(layout.checkpoint_key("job", 0))) as tar:
        assert tar.extractfile("step").read() == b"7"
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # this process is untouched


def test_a_tasks_own_threads_share_its_folder(tmp_path):
    import concurrent.futures
    store = DirectoryStore(tmp_path / "store")
    undo = checkpoint.begin(store, "job", 0)  # this test runs in the main thread, as a task does
    try:
        mine = spmd.checkpoint_dir()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            assert list(pool.map(lambda _: spmd.checkpoint_dir(), range(2))) == [mine, mine]
    finally:
        undo()
    assert not mine.exists()  # a task's folder goes with the task
    assert spmd.checkpoint_dir() != mine
