"""Data where it lives, without Docker: references by URL, versions, fetch, publish, templates."""
import os
import time

import pytest

import spmd
from spmd import data, destinations, protocol, remote
from spmd.batch_queue import RUNNING, SUCCEEDED, TaskStatus


def test_a_file_url_is_a_path_and_options_on_a_path_are_refused(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    assert spmd.File(f"file://{tmp_path}/a.txt").path == tmp_path / "a.txt"
    with pytest.raises(spmd.DataError, match="options apply to URLs"):
        spmd.File(tmp_path / "a.txt", anon=True)


def test_unknown_scheme_missing_extra_and_credentials_are_refused_at_once(monkeypatch):
    with pytest.raises(spmd.DataError, match="unknown scheme nosuch://"):
        spmd.File("nosuch://bucket/key")
    import fsspec

    def missing(protocol):
        raise ImportError("Install gcsfs to access Google Storage")
    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    with pytest.raises(spmd.DataError, match=r"pip install 'spmd\[gcs\]'"):
        spmd.File("gs://bucket/key")
    monkeypatch.undo()
    with pytest.raises(spmd.DataError, match="credentials would be stored") as info:
        spmd.File("s3://bucket/key", key="AKIA", secret="s")
    assert "secret" in str(info.value) and "AKIA" not in str(info.value)


def test_equal_urls_with_equal_options_are_equal():
    assert spmd.File("s3://b/k", anon=True) == spmd.File("s3://b/k", anon=True)
    assert spmd.File("s3://b/k", anon=True) != spmd.File("s3://b/k")
    assert repr(spmd.File("s3://b/k", anon=True)) == "spmd.File('s3://b/k', anon=True)"


def test_resolve_a_file_and_a_folder_by_metadata(tmp_path):
    (tmp_path / "sub-01" / "dwi").mkdir(parents=True)
    (tmp_path / "sub-01" / "dwi" / "dwi.nii.gz").write_bytes(b"x" * 100)
    (tmp_path / "sub-01" / "README").write_text("r")
    single = remote.resolve(f"file://{tmp_path}/sub-01/README", {})
    assert (single.name, single.is_dir, single.size) == ("README", False, 1)
    folder = remote.resolve(f"file://{tmp_path}/sub-01/", {})
    assert folder.is_dir and folder.name == "sub-01" and folder.size == 101
    assert folder.files == (("README", 1), ("dwi/dwi.nii.gz", 100))
    # a change of one file changes the folder's version, and an unchanged folder keeps it
    assert remote.resolve(f"file://{tmp_path}/sub-01/", {}).version == folder.version
    later = time.time() + 5
    os.utime(tmp_path / "sub-01" / "README", (later, later))
    assert remote.resolve(f"file://{tmp_path}/sub-01/", {}).version != folder.version


def test_resolve_names_a_missing_url(tmp_path):
    with pytest.raises(spmd.DataError, match="no such object or folder") as info:
        remote.resolve(f"file://{tmp_path}/nothing.nii.gz", {})
    assert "nothing.nii.gz" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(spmd.DataError, match="nothing is listed under it"):
        remote.resolve(f"file://{tmp_path}/empty/", {})


def test_version_fields_in_order_of_precedence():
    assert remote.version_of({"VersionId": "v1", "ETag": '"e"', "size": 3}) == "VersionId=v1;size=3"
    assert remote.version_of({"ETag": '"abc"', "size": 3}) == "ETag=abc;size=3"
    assert remote.version_of({"Last-Modified": "Tue", "size": 3}) == "Last-Modified=Tue;size=3"
    assert remote.version_of({"size": 3}) == "size=3"


def test_fetch_once_per_version_into_a_cache(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"abc")
    (tmp_path / "src" / "deep").mkdir()
    (tmp_path / "src" / "deep" / "b.bin").write_bytes(b"de")
    ref = remote.resolve(f"file://{tmp_path}/src/", {})
    cache = tmp_path / "cache"
    assert remote.cached(ref, cache) is None
    got = remote.fetch(ref, cache)
    assert got == cache / ref.digest / "src"
    assert (got / "deep" / "b.bin").read_bytes() == b"de"
    (tmp_path / "src" / "a.bin").write_bytes(b"changed")  # same version: the copy is not fetched again
    assert remote.fetch(ref, cache) == got and (got / "a.bin").read_bytes() == b"abc"
    assert not [p for p in (cache / ref.digest).iterdir() if p.name.startswith(".partial")]


def test_publish_writes_every_file_and_leaves_no_partial_names(tmp_path):
    out = tmp_path / "outputs"
    (out / "sub").mkdir(parents=True)
    (out / "fa.nii.gz").write_bytes(b"fa")
    (out / "sub" / "md.json").write_text("{}")
    dest = str(tmp_path / "derivatives" / "sub-01") + "/"
    urls = remote.publish(out, dest, {})
    assert urls == [dest + "fa.nii.gz", dest + "sub/md.json"]
    assert remote.list_files(dest, {}) == {"fa.nii.gz": dest + "fa.nii.gz",
                                           "sub/md.json": dest + "sub/md.json"}
    assert sorted(p.name for p in (tmp_path / "derivatives" / "sub-01").rglob("*")) == \
        ["fa.nii.gz", "md.json", "sub"]


def test_check_writable_refuses_a_destination_it_cannot_write(tmp_path):
    remote.check_writable(str(tmp_path / "new" / "folder"), {})  # made, and left empty
    assert list((tmp_path / "new" / "folder").iterdir()) == []
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(spmd.DataError, match="cannot write there") as info:
        remote.check_writable(str(tmp_path / "a-file" / "dti"), {})
    assert "a-file/dti" in str(info.value)


def test_destinations_render_fields_from_index_and_dict_keys(tmp_path):
    found = destinations.render("s3://out/dti/{subject}/{index}", [{"subject": "sub-01"},
                                                                 {"subject": "sub-02"}])
    assert found.urls == ["s3://out/dti/sub-01/0/", "s3://out/dti/sub-02/1/"]
    assert found.roots() == ["s3://out/dti/"]
    args = destinations.render("s3://out/{label}/", [spmd.Args(1, label="a")])
    assert args.urls == ["s3://out/a/"]
    local = destinations.render("derivatives/{index}", ["x"])
    assert local.urls == [f"{os.getcwd()}/derivatives/0/"]


def test_destinations_refuse_a_missing_field_a_clash_and_a_bad_template():
    with pytest.raises(spmd.DataError, match=r"item 1 has no value for \{subject\}"):
        destinations.render("s3://out/{subject}/", [{"subject": "a"}, {"session": "b"}])
    with pytest.raises(spmd.DataError, match="items 0 and 1 would both publish to s3://out/a/"):
        destinations.render("s3://out/{subject}/", [{"subject": "a"}, {"subject": "a"}])
    with pytest.raises(spmd.DataError, match="must be a plain name"):
        destinations.render("s3://out/{subject!r}/", [{"subject": "a"}])
    with pytest.raises(spmd.DataError, match="not a valid template"):
        destinations.render("s3://out/{subject/", [{"subject": "a"}])


def test_job_data_lists_each_items_inputs_and_destination(tmp_path):
    (tmp_path / "a").write_text("a")
    ref = remote.resolve(f"file://{tmp_path}/a", {})
    staged = [((0, ref), {}), ((1, "plain"), {"also": [ref]}), ((2,), {})]
    dests = destinations.render(str(tmp_path / "out" / "{index}"), [0, 1, 2])
    raw = data.job_data(staged, [ref], dests)
    loaded = data.JobData(raw)
    assert loaded.inputs_of(0) == [ref] and loaded.inputs_of(1) == [ref] and loaded.inputs_of(2) == []
    assert loaded.destination(2) == str(tmp_path / "out" / "2") + "/"


def _output(task):
    return protocol.TaskOutput(task=task, attempt=1, final=True, results=[("ok", None)],
                               provenance=protocol.Provenance(0, 1, 1, 0, "h", "i", "3.11"))


def test_a_host_published_output_resolves_only_when_the_queue_says_the_task_ended():
    outputs = {0: _output(0)}
    running = {0: TaskStatus(RUNNING, 1)}
    assert protocol.resolve([0], outputs, running).resolutions[0].kind == "output"
    assert protocol.resolve([0], outputs, running, wait_for_queue=True).resolutions == []
    ended = {0: TaskStatus(SUCCEEDED, 1, 0)}
    assert protocol.resolve([0], outputs, ended, wait_for_queue=True).resolutions[0].kind == "output"
