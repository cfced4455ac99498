"""Uploaded data on a directory store: a blob that no longer matches its hash is sent again
before reuse, and a folder listing naming a path outside its folder is refused."""
import json

import pytest

from spmd import data
from spmd.errors import DataError
from spmd.scheduling import DirectoryStore


def test_a_tampered_blob_is_sent_again_before_it_is_reused(tmp_path):
    store = DirectoryStore(tmp_path / "store")
    subject = tmp_path / "sub-01.nii"
    subject.write_bytes(b"the real scan")
    first = data.UploadReport()
    ref = data.reference(data.File(subject), first)
    data.send(store, first)
    assert first.uploaded_objects == 1
    store.path(ref.key).write_bytes(b"planted content")
    again = data.UploadReport()
    data.reference(data.File(subject), again)
    data.send(store, again)
    assert again.uploaded_objects == 1
    assert store.get(ref.key) == b"the real scan"
    quiet = data.UploadReport()
    data.reference(data.File(subject), quiet)
    data.send(store, quiet)
    assert quiet.uploaded_objects == 0  # an intact blob is reused


@pytest.mark.parametrize("rel", ["../../escaped.txt", "/etc/cron.d/x", "a/../../b"])
def test_a_folder_listing_that_leaves_its_folder_is_refused(tmp_path, monkeypatch, rel):
    store = DirectoryStore(tmp_path / "store")
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    report = data.UploadReport()
    blob_ref = data.reference(data.File(blob), report)
    data.send(store, report)
    listing = json.dumps({"files": {rel: blob_ref.key}, "dirs": []}).encode()
    store.put("data/tree/bad", listing)
    monkeypatch.setenv(data.STAGE_DIR, str(tmp_path / "stage"))
    with pytest.raises(DataError, match="outside its folder"):
        data.stage(store, data.DataRef(key="data/tree/bad", name="sub", is_dir=True, size=1))
    assert not (tmp_path / "escaped.txt").exists()


def test_a_jobs_url_view_links_only_what_its_signed_data_json_names(tmp_path):
    from spmd import integrity, layout, remote
    from spmd.errors import StoreError
    from spmd_local import dataview
    store = DirectoryStore(tmp_path / "store")
    mine = remote.UrlRef("https://example.org/sub-02.nii", (), "sub-02.nii", False, "v1", 3)
    theirs = remote.UrlRef("https://example.org/sub-01.nii", (), "sub-01.nii", False, "v1", 3)
    for ref in (mine, theirs):  # both in the store's cache, fetched for two jobs
        (store.path(remote.CACHE) / ref.digest).mkdir(parents=True)
        (store.path(remote.CACHE) / ref.digest / ref.name).write_bytes(b"scan")
    integrity.make_key(store, "job-b")
    store.put(layout.data_key("job-b"), json.dumps({"inputs": [mine.to_dict()]}).encode())
    integrity.sign(store, "job-b", layout.data_key("job-b"))
    dataview.ensure(store, "job-b")
    dataview.UrlLinks(store, "job-b").sync()
    view = dataview.view_path(store, "job-b") / "urls"
    assert sorted(p.relative_to(view).as_posix() for p in view.rglob("*") if p.is_file()) == \
        [f"{mine.digest}/sub-02.nii"]
    # a task (it may write its job's folder) names the other job's input too: refused
    store.put(layout.data_key("job-b"), json.dumps(
        {"inputs": [mine.to_dict(), theirs.to_dict()]}).encode())
    with pytest.raises(StoreError, match="changed after the job was submitted"):
        dataview.UrlLinks(store, "job-b")
