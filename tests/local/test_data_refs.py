"""Data references on the local backend (beyond the kit's DataContract, which test_local runs):
re-upload only what changed, references nested in items, the streaming store defaults."""
import hashlib
import mmap
import os

import pytest

import spmd
from spmd.stores.object_store import ObjectStore

pytestmark = pytest.mark.docker


def sha_and_name(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest(), os.path.basename(path)


def nested(item):
    """Paths inside a dict of lists arrive as strings; the non-File values as they were."""
    return [(type(p).__name__, open(p).read()) for p in item["inputs"]] + [item["label"]]


def test_a_changed_file_is_uploaded_again_and_an_unchanged_one_is_not(local, engine, tmp_path):
    changing, fixed = tmp_path / "changing.txt", tmp_path / "fixed.txt"
    changing.write_text("version 1")
    fixed.write_text("never changes")
    knot = spmd.Knot(sha_and_name, config=local)
    first = knot.map([spmd.File(changing), spmd.File(fixed)])
    assert first.uploads.uploaded_bytes == len("version 1") + len("never changes")
    changing.write_text("version two")
    second = knot.map([spmd.File(changing), spmd.File(fixed)])
    assert second.uploads.uploaded_objects == 1
    assert second.uploads.uploaded_bytes == len("version two")
    assert second.results(timeout=300) == [
        (hashlib.sha256(b"version two").hexdigest(), "changing.txt"),
        (hashlib.sha256(b"never changes").hexdigest(), "fixed.txt")]


def test_references_nested_in_an_item(local, engine, tmp_path):
    (tmp_path / "a").write_text("A")
    (tmp_path / "b").write_text("B")
    item = {"inputs": [spmd.File(tmp_path / "a"), spmd.File(tmp_path / "b")], "label": "x"}
    job = spmd.Knot(nested, config=local).map([item])
    assert job.results(timeout=300) == [[("str", "A"), ("str", "B"), "x"]]


def test_outputs_outside_a_task_is_a_fresh_folder():
    # The same function runs in-process (a notebook, a check) without a task around it.
    first, second = spmd.outputs(), spmd.outputs()
    assert first.is_dir() and second.is_dir() and first != second


class _Recording(ObjectStore):
    """A dict store recording what the base class's put_file/get_file hand its primitives."""

    scheme = "mem"

    def __init__(self):
        self.objects, self.puts, self.ranges = {}, [], []

    @property
    def url(self):
        return "mem://"

    def put(self, key, data):
        self.puts.append(type(data))
        self.objects[key] = bytes(data)

    def get(self, key, start=None, end=None):
        if key not in self.objects:
            raise spmd.ObjectNotFound(key)
        self.ranges.append((start, end))
        return self.objects[key][start:end]

    def list(self, prefix):
        return iter(sorted(k for k in self.objects if k.startswith(prefix)))

    def delete(self, key):
        self.objects.pop(key, None)


def test_default_streaming_keeps_memory_bounded(tmp_path):
    store = _Recording()
    store.transfer_chunk = 1000
    source = tmp_path / "src"
    source.write_bytes(os.urandom(2500))
    store.put_file("k", source)
    assert store.puts == [mmap.mmap]  # the file's own pages, not a copy in a bytes object
    store.get_file("k", tmp_path / "dst")
    assert store.ranges == [(0, 1000), (1000, 2000), (2000, 3000)]
    assert (tmp_path / "dst").read_bytes() == source.read_bytes()
