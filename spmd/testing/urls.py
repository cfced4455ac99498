"""Data where it lives: the same on every backend.

    UrlDataContract    spmd.File(URL, **options) of an object and of a folder (a prefix) in a
                       bucket arrives as a local path with its bytes, none of them sent by
                       the client; a missing URL, an unknown scheme and an unwritable
                       destination fail at map(), naming them; outputs_to publishes each
                       item's output files to its rendered destination (not the store), which
                       job.output_urls, job.download and spmd.open_url then read; a field an
                       item lacks fails at map(); reuse=True reruns exactly the items whose
                       object changed in the bucket.

The bucket is moto's S3 server (``spmd.testing.buckets``), read anonymously as OpenNeuro's
is; ``spmd_bucket`` may be overridden by a backend whose tasks reach another one.
"""
from __future__ import annotations

import hashlib
import secrets

import pytest

import spmd

from . import data_functions as fn
from .buckets import Bucket
from .fixtures import WAIT, BackendFixtures


class UrlDataContract(BackendFixtures):
    """spmd.File by URL and outputs_to on the backend under test."""

    @pytest.fixture
    def spmd_bucket(self) -> Bucket:
        return Bucket.create()

    def _subjects(self, bucket: Bucket, n: int) -> dict[str, bytes]:
        objects = {"dataset_description.json": b'{"Name": "spmd test", "BIDSVersion": "1.8.0"}'}
        for i in range(1, n + 1):
            objects[f"sub-{i:02d}/dwi/sub-{i:02d}_dwi.nii.gz"] = secrets.token_bytes(20_000 + i)
            objects[f"sub-{i:02d}/dwi/sub-{i:02d}_dwi.bval"] = f"0 1000 1000 {i}\n".encode()
        for key, body in objects.items():
            bucket.put(key, body)
        return objects

    def test_url_object_and_folder_arrive_as_local_paths(self, spmd_knot, spmd_bucket):
        objects = self._subjects(spmd_bucket, 2)
        opts = spmd_bucket.options
        key = "sub-01/dwi/sub-01_dwi.nii.gz"
        job = spmd_knot(fn.describe_file).map([spmd.File(spmd_bucket.url(key), **opts)])
        assert job.results(timeout=WAIT) == [
            {"type": "str", "is_file": True, "name": "sub-01_dwi.nii.gz",
             "sha256": hashlib.sha256(objects[key]).hexdigest()}]
        tree = spmd_knot(fn.hash_tree).map([spmd.File(spmd_bucket.url("sub-02/"), **opts)])
        assert tree.results(timeout=WAIT) == [{"name": "sub-02", "files": {
            "dwi/sub-02_dwi.nii.gz": hashlib.sha256(objects["sub-02/dwi/sub-02_dwi.nii.gz"]).hexdigest(),
            "dwi/sub-02_dwi.bval": hashlib.sha256(b"0 1000 1000 2\n").hexdigest()}}]
        # nothing of the data went through the client
        for uploads in (job.uploads, tree.uploads):
            assert uploads.uploaded_bytes == 0 and uploads.references == 0
        assert job.uploads.remote_references == 1
        assert job.uploads.remote_bytes == len(objects[key])
        assert tree.uploads.remote_bytes == len(objects["sub-02/dwi/sub-02_dwi.nii.gz"]) + 14

    def test_url_missing_object_fails_at_map_naming_it(self, spmd_knot, spmd_bucket, spmd_store):
        self._subjects(spmd_bucket, 1)
        missing = spmd_bucket.url("sub-09/dwi/nothing.nii.gz")
        before = set(spmd_store.list("jobs/"))
        with pytest.raises(spmd.DataError, match="no such object or folder") as info:
            spmd_knot(fn.describe_file).map([spmd.File(spmd_bucket.url("sub-01/"), **spmd_bucket.options),
                                             spmd.File(missing, **spmd_bucket.options)])
        assert missing in str(info.value)
        assert set(spmd_store.list("jobs/")) == before  # nothing was submitted

    def test_url_unknown_scheme_and_credentials_in_options_are_refused(self):
        with pytest.raises(spmd.DataError, match="unknown scheme nosuch://"):
            spmd.File("nosuch://bucket/key")
        with pytest.raises(spmd.DataError, match="credentials would be stored"):
            spmd.File("s3://bucket/key", secret="hunter2")

    def test_outputs_are_published_to_each_items_destination(self, spmd_knot, spmd_bucket,
                                                             spmd_store, tmp_path):
        out = Bucket.create("spmd-derivatives", writable=True)
        job = spmd_knot(fn.write_outputs).map(
            [spmd.Args(label) for label in ("sub-01", "sub-02")],
            outputs_to=out.url("dti/{index}/"), outputs_options=out.options)
        assert job.results(timeout=WAIT) == ["sub-01", "sub-02"]
        assert out.keys() == ["dti/0/result.txt", "dti/0/sub/copy.bin",
                              "dti/1/result.txt", "dti/1/sub/copy.bin"]
        assert out.get("dti/1/result.txt") == b"result of sub-02\n"
        assert not list(spmd_store.list(f"jobs/{job.id}/files/"))  # instead of the store
        urls = job.output_urls(0)
        assert urls == {"result.txt": out.url("dti/0/result.txt"),
                        "sub/copy.bin": out.url("dti/0/sub/copy.bin")}
        with spmd.open_url(urls["result.txt"], **out.options) as handle:
            assert handle.read() == b"result of sub-01\n"
        paths = job.download(1, tmp_path / "back")
        assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in paths) == \
            ["result.txt", "sub/copy.bin"]
        assert (tmp_path / "back" / "result.txt").read_text() == "result of sub-02\n"

    def test_outputs_to_fields_come_from_dict_items_and_bad_ones_fail_at_map(self, spmd_knot,
                                                                               spmd_bucket):
        out = Bucket.create("spmd-derivatives", writable=True)
        opts = out.options
        job = spmd_knot(fn.write_label).map([{"subject": "sub-01"}, {"subject": "sub-02"}],
                                            outputs_to=out.url("fa/{subject}"), outputs_options=opts)
        assert job.results(timeout=WAIT) == ["sub-01", "sub-02"]
        assert out.keys("fa/") == ["fa/sub-01/label.txt", "fa/sub-02/label.txt"]
        with pytest.raises(spmd.DataError, match=r"item 1 has no value for \{subject\}"):
            spmd_knot(fn.write_label).map([{"subject": "a"}, {"session": "b"}],
                                          outputs_to=out.url("fa/{subject}/"), outputs_options=opts)
        with pytest.raises(spmd.DataError, match="cannot write there"):
            spmd_knot(fn.write_label).map([{"subject": "a"}],
                                          outputs_to="s3://spmd-no-such-bucket-x1/{subject}/",
                                          outputs_options=opts)

    def test_url_reuse_reruns_only_the_items_whose_object_changed(self, spmd_knot, spmd_bucket):
        self._subjects(spmd_bucket, 3)
        opts = spmd_bucket.options
        items = [spmd.File(spmd_bucket.url(f"sub-{i:02d}/dwi/sub-{i:02d}_dwi.nii.gz"), **opts)
                 for i in (1, 2, 3)]
        knot = spmd_knot(fn.describe_file)
        first = knot.map(items, reuse=True)
        first.results(timeout=WAIT)
        spmd_bucket.put("sub-02/dwi/sub-02_dwi.nii.gz", b"changed")
        items = [spmd.File(f.url, **opts) for f in items]
        second = knot.map(items, reuse=True)
        assert second.manifest.items == [1]  # only the changed one runs
        results = second.results(timeout=WAIT)
        assert results[1]["sha256"] == hashlib.sha256(b"changed").hexdigest()
        assert results[0] == first.results()[0] and results[2] == first.results()[2]
