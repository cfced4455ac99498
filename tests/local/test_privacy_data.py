"""Uploaded subject data leaves the local store: spmd clean JOB removes the inputs no other job
references, spmd clean --data removes them all."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import spmd
from spmd import data

pytestmark = pytest.mark.docker


def size_of(path):
    return os.path.getsize(path)


def spmd_cli(*args, store_dir):
    return subprocess.run([sys.executable, "-m", "spmd.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "SPMD_STORE_DIR": store_dir}, timeout=120)


def blobs(store_dir):
    root = Path(store_dir) / "spmd" / "data"
    return sorted(p.name for sub in ("sha256", "tree") if (root / sub).is_dir()
                  for p in (root / sub).iterdir())


def test_clean_removes_uploaded_inputs_no_other_job_references(tmp_path, store_dir, engine):
    shared, own = tmp_path / "shared.nii", tmp_path / "own.nii"
    shared.write_bytes(b"subject 1" * 1000)
    own.write_bytes(b"subject 2" * 1000)
    folder = tmp_path / "sub-03"
    folder.mkdir()
    (folder / "t1.nii").write_bytes(b"subject 3")
    knot = spmd.Knot(size_of, config={"store_dir": store_dir, "max_vcpus": 2})
    first = knot.map([spmd.File(shared), spmd.File(own), spmd.File(folder)])
    second = knot.map([spmd.File(shared)])
    assert first.results(timeout=300) == [9000, 9000, os.path.getsize(folder)]
    assert second.results(timeout=300) == [9000]
    shared_key = data.file_sha256(shared)
    assert shared_key in blobs(store_dir) and data.file_sha256(own) in blobs(store_dir)

    done = spmd_cli("clean", first.id, store_dir=store_dir)
    assert done.returncode == 0, done.stderr
    assert "removed 3 uploaded inputs no other job references" in done.stdout  # own, t1, tree
    assert blobs(store_dir) == [shared_key]  # the second job still reads it

    done = spmd_cli("clean", "--data", store_dir=store_dir)
    assert done.returncode == 0 and "removed 1 uploaded inputs" in done.stdout, done.stdout
    assert blobs(store_dir) == []


def peek(own, theirs):
    """This task's input, and what reading another job's uploaded input gives."""
    try:
        open(theirs).read()
        seen = "read"
    except OSError as exc:
        seen = exc.strerror
    return open(own).read(), seen


def test_a_task_sees_its_own_jobs_inputs_and_no_other_jobs(tmp_path, store_dir, engine):
    theirs, mine = tmp_path / "sub-01.txt", tmp_path / "sub-02.txt"
    theirs.write_text("subject one")
    mine.write_text("subject two")
    config = {"store_dir": store_dir, "max_vcpus": 2}
    other = spmd.Knot(size_of, config=config).map([spmd.File(theirs)])
    assert other.results(timeout=300) == [11]
    blob = Path(store_dir) / "spmd" / data.BLOBS / data.file_sha256(theirs)
    job = spmd.Knot(peek, config=config).map([(spmd.File(mine), str(blob))], starmap=True)
    assert job.results(timeout=300) == [("subject two", "No such file or directory")]
    from spmd.testing import wait_for
    wait_for(lambda: not job.backend.queue.scheduler_alive(job.id), 60, "the scheduler to end")
    assert not (Path(store_dir) / "spmd" / "views" / job.id).exists()  # gone with the scheduler
