"""A job's objects are private on the backend under test, whatever the umask.

    PrivacyContract   every object of a job that read a subject's file (its function, inputs,
                      outputs, logs, the uploaded file) and objects put directly under a umask
                      of 000 are private: ``ObjectStore.exposed`` names nobody. What private
                      means is the store's: a directory store's folder 0700 and files 0600, a
                      bucket's objects with no public ACL grant
"""
from __future__ import annotations

import os

import spmd

from ..data import file_sha256
from . import data_functions as dfn
from .fixtures import WAIT, BackendFixtures


class PrivacyContract(BackendFixtures):
    """Who else may read or write a job's objects: nobody."""

    def test_privacy_every_object_of_a_job_is_private(self, spmd_knot, spmd_store, tmp_path):
        subject = tmp_path / "sub-01_T1w.nii"
        subject.write_bytes(b"a subject's scan " * 64)
        before = os.umask(0o002)  # a group-writable umask, as on many shared machines
        try:
            job = spmd_knot(dfn.describe_file).map([spmd.File(subject)])
            assert job.results(timeout=WAIT)[0]
        finally:
            os.umask(before)
        keys = list(spmd_store.list(f"jobs/{job.id}/"))
        keys += [k for k in spmd_store.list("data/sha256/") if k.endswith(
            file_sha256(subject))]
        assert len(keys) >= 4, keys  # manifest, function, shard, output, and the upload at least
        exposed = {key: spmd_store.exposed(key) for key in keys}
        assert not any(exposed.values()), {k: v for k, v in exposed.items() if v}

    def test_privacy_objects_put_under_an_open_umask_are_private(self, spmd_store, spmd_scratch,
                                                                 tmp_path):
        source = tmp_path / "payload"
        source.write_bytes(b"payload")
        before = os.umask(0)
        try:
            spmd_store.put(spmd_scratch + "put", b"x")
            spmd_store.put_parts(spmd_scratch + "parts/one", [b"a", b"b"])
            spmd_store.put_file(spmd_scratch + "file", source)
        finally:
            os.umask(before)
        for key in ("put", "parts/one", "file"):
            assert spmd_store.exposed(spmd_scratch + key) == [], key
