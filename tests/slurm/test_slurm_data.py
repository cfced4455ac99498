"""Data where it lives, on Slurm (issue 16): DataRule(inputs="client", outputs="task").

A file under ``shared_paths`` reaches the task as the very same path, uploaded nowhere, and
its size and mtime are its version for ``reuse=True``; a URL is staged by the client (the
login node) into shared_dir once per version; tasks publish ``outputs_to`` folders on a
shared filesystem themselves; ``shared_paths`` is checked like every other key.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import spmd
from spmd import remote
from spmd.testing import data_functions as fn
from spmd.testing.buckets import Bucket
from spmd.testing.fixtures import WAIT
from spmd_slurm.paths import SharedPaths
from spmd_slurm.queue import SlurmQueue
from spmd_slurm.script import Options
from spmd_slurm.store import DirectoryStore


def where_and_what(path):
    """The path the task received, and the sha256 of what is there."""
    import hashlib as _hashlib
    import os as _os
    if _os.path.isdir(path):
        digest = _hashlib.sha256()
        for dirpath, _, names in sorted(_os.walk(path)):
            for name in sorted(names):
                with open(_os.path.join(dirpath, name), "rb") as handle:
                    digest.update(name.encode() + handle.read())
        return path, digest.hexdigest()
    with open(path, "rb") as handle:
        return path, _hashlib.sha256(handle.read()).hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def scratch(tmp_path) -> Path:
    """A folder standing for the cluster's /scratch (this test cluster has one node)."""
    folder = tmp_path / "scratch"
    (folder / "bids" / "sub-01" / "dwi").mkdir(parents=True)
    return folder


@pytest.fixture
def data_config(slurm_config, scratch) -> dict:
    return {**slurm_config, "shared_paths": [str(scratch)]}


def test_a_file_under_shared_paths_arrives_as_the_very_same_path(data_config, scratch, tmp_path):
    dwi = scratch / "bids" / "sub-01" / "dwi" / "sub-01_dwi.nii.gz"
    dwi.write_bytes(os.urandom(30_000))
    knot = spmd.Knot(where_and_what, backend="slurm", config=data_config)
    job = knot.map([spmd.File(dwi)])
    assert job.results(timeout=WAIT) == [(str(dwi), sha(dwi.read_bytes()))]
    assert job.uploads.uploaded_bytes == 0 and job.uploads.references == 0
    assert job.uploads.remote_references == 1 and job.uploads.remote_bytes == 30_000
    assert job.uploads.staged_bytes == 0  # nor copied into shared_dir's cache
    # A folder too, as its own path (no trailing slash, as a local path would be).
    folder = scratch / "bids" / "sub-01"
    tree = knot.map([spmd.File(folder)])
    [(path, _)] = tree.results(timeout=WAIT)
    assert path == str(folder) and tree.uploads.uploaded_bytes == 0
    # The same file outside shared_paths is uploaded into the store, and read from a copy.
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.bin").write_bytes(dwi.read_bytes())
    copied = knot.map([spmd.File(home / "notes.bin")])
    [(path, digest)] = copied.results(timeout=WAIT)
    assert path != str(home / "notes.bin") and digest == sha(dwi.read_bytes())
    assert copied.uploads.references == 1 and copied.uploads.remote_references == 0


def test_reuse_reruns_exactly_the_item_whose_shared_file_changed(data_config, scratch):
    files = []
    for i in (1, 2, 3):
        path = scratch / "bids" / f"sub-{i:02d}_dwi.bval"
        path.write_bytes(f"0 1000 {i}\n".encode())
        files.append(path)
    knot = spmd.Knot(where_and_what, backend="slurm", config=data_config)
    first = knot.map([spmd.File(p) for p in files], reuse=True)
    first.results(timeout=WAIT)
    assert first.manifest.items is None  # all ran
    # A new size: item 1 runs again, alone, and reads the new content.
    files[1].write_bytes(b"0 1000 1000 2\n")
    second = knot.map([spmd.File(p) for p in files], reuse=True)
    assert second.manifest.items == [1]
    results = second.results(timeout=WAIT)
    assert results[1] == (str(files[1]), sha(b"0 1000 1000 2\n"))
    assert results[0] == first.results()[0] and results[2] == first.results()[2]
    # The same size, a new mtime (the file was rewritten): item 2 runs again.
    stat = files[2].stat()
    os.utime(files[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    third = knot.map([spmd.File(p) for p in files], reuse=True)
    assert third.manifest.items == [2]
    assert third.results(timeout=WAIT) == results
    # Nothing changed: nothing runs.
    fourth = knot.map([spmd.File(p) for p in files], reuse=True)
    assert fourth.manifest.items == []


def test_a_url_is_staged_into_shared_dir_once_per_version(data_config, slurm_shared_dir):
    bucket = Bucket.create()
    body = os.urandom(25_000)
    url = bucket.put("sub-01/dwi/sub-01_dwi.nii.gz", body)
    knot = spmd.Knot(where_and_what, backend="slurm", config=data_config)
    cache = Path(slurm_shared_dir) / "store" / "spmd" / remote.CACHE
    first = knot.map([spmd.File(url, **bucket.options)])
    [(path, digest)] = first.results(timeout=WAIT)
    assert digest == sha(body) and first.uploads.staged_bytes == len(body)
    assert first.uploads.uploaded_bytes == 0
    # The task read the login node's copy in shared_dir; it did not fetch its own.
    assert Path(path).parent.parent == cache and Path(path).name == "sub-01_dwi.nii.gz"
    second = knot.map([spmd.File(url, **bucket.options)])
    assert second.results(timeout=WAIT) == [(path, digest)]
    assert second.uploads.staged_bytes == 0
    # A new version of the object is a new copy, staged once again.
    bucket.put("sub-01/dwi/sub-01_dwi.nii.gz", b"version 2")
    third = knot.map([spmd.File(url, **bucket.options)])
    [(new_path, new_digest)] = third.results(timeout=WAIT)
    assert new_digest == sha(b"version 2") and new_path != path
    assert third.uploads.staged_bytes == len(b"version 2")
    assert Path(path).read_bytes() == body  # the old version's copy is left as it was


def test_outputs_to_a_shared_folder_are_published_by_the_tasks(data_config, scratch, tmp_path,
                                                                slurm_shared_dir):
    knot = spmd.Knot(fn.write_outputs, backend="slurm", config=data_config)
    destination = scratch / "derivatives"
    job = knot.map([spmd.Args("sub-01"), spmd.Args("sub-02")],
                   outputs_to=str(destination) + "/{index}/")
    assert job.results(timeout=WAIT) == ["sub-01", "sub-02"]
    found = sorted(p.relative_to(destination).as_posix() for p in destination.rglob("*")
                   if p.is_file())
    assert found == ["0/result.txt", "0/sub/copy.bin", "1/result.txt", "1/sub/copy.bin"]
    assert (destination / "1" / "result.txt").read_text() == "result of sub-02\n"
    assert not list(job.backend.store.list(f"jobs/{job.id}/files/"))  # not in the store
    assert job.output_urls(0) == {"result.txt": f"{destination}/0/result.txt",
                                  "sub/copy.bin": f"{destination}/0/sub/copy.bin"}
    back = job.download(1, tmp_path / "back")
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in back) == \
        ["result.txt", "sub/copy.bin"]
    assert (tmp_path / "back" / "result.txt").read_text() == "result of sub-02\n"
    # A folder on no shared filesystem would be written on each node's own disk: refused.
    before = set(job.backend.store.list("jobs/"))
    with pytest.raises(spmd.DataError, match="not on a shared filesystem") as info:
        knot.map([spmd.Args("sub-01")], outputs_to=str(tmp_path / "home" / "{index}"))
    assert str(tmp_path / "home" / "0") in str(info.value) and "shared_paths" in str(info.value)
    assert set(job.backend.store.list("jobs/")) == before  # nothing was submitted


@pytest.mark.parametrize("value, message", [
    (["scratch"], "'scratch' is not an absolute path"),
    (["/"], "'/' would pass every path"),
    ([3], "expected a list of strings"),
])
def test_a_bad_shared_paths_value_is_a_config_error_naming_the_key(slurm_config, value, message):
    with pytest.raises(spmd.ConfigError, match=message) as info:
        spmd.Knot(fn.describe_file, backend="slurm", config={**slurm_config, "shared_paths": value})
    assert info.value.key == "shared_paths" and "shared_paths" in str(info.value)


def test_shared_means_under_a_root_as_written_and_as_resolved(tmp_path):
    scratch, home = tmp_path / "scratch", tmp_path / "home"
    (scratch / "lab").mkdir(parents=True)
    home.mkdir()
    (scratch / "to-home").symlink_to(home)        # a link out of the shared filesystem
    (home / "to-scratch").symlink_to(scratch / "lab")  # and one into it from outside
    shared = SharedPaths([scratch, tmp_path / "shared_dir"])
    assert scratch / "lab" in shared and scratch in shared
    assert str(tmp_path / "shared_dir" / "store") in shared
    assert tmp_path / "scratchy" not in shared                  # a prefix is not a parent
    assert f"{scratch}/lab/../../home" not in shared             # no climbing out with ..
    assert scratch / "to-home" / "x" not in shared               # resolves outside
    assert home / "to-scratch" not in shared                     # the node sees it under home
    assert "scratch/lab" not in shared                           # relative: not a node's path
    # Containers mount the roots that exist, an inner one inside its outer one only once.
    (scratch / "lab" / "spmd").mkdir()
    assert SharedPaths([scratch, scratch / "lab" / "spmd"]).mounts() == (str(scratch),)
    # A task container sees its own job's folder and the store's data (or the shared path
    # that holds them), never the rest of shared_dir.
    inside = SlurmQueue(DirectoryStore(scratch / "lab" / "spmd" / "store"),
                        Options(shared_dir=f"{scratch}/lab/spmd", mounts=(str(scratch),)))
    assert inside.volumes("j1") == [str(scratch)]
    apart = SlurmQueue(DirectoryStore(home / "store"), Options(shared_dir=str(home),
                                                               mounts=(str(scratch),)))
    assert apart.volumes("j1") == [str(home / "store" / "spmd" / "jobs" / "j1"),
                                   str(home / "store" / "spmd" / "data"), str(scratch)]


@pytest.mark.docker
def test_docker_tasks_see_shared_paths_and_publish_there(data_config, scratch):
    dwi = scratch / "bids" / "sub-01" / "dwi" / "sub-01_dwi.nii.gz"
    dwi.write_bytes(b"a shared file")
    config = {**data_config, "runtime": "docker"}
    job = spmd.Knot(where_and_what, backend="slurm", config=config).map([spmd.File(dwi)])
    assert job.results(timeout=WAIT) == [(str(dwi), sha(b"a shared file"))]
    assert job.uploads.uploaded_bytes == 0
    published = spmd.Knot(fn.write_label, backend="slurm", config=config).map(
        [{"subject": "sub-01"}], outputs_to=str(scratch / "fa" / "{subject}"))
    assert published.results(timeout=WAIT) == ["sub-01"]
    assert (scratch / "fa" / "sub-01" / "label.txt").read_text() == "sub-01\n"
