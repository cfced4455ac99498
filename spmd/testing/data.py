"""Data references and command jobs: the same on every backend.

    DataContract    spmd.File arguments arrive as local paths with their bytes (files and
                    folders); a second map over the same files uploads nothing; files written
                    under spmd.outputs() come back with job.download and as URLs that
                    spmd.open_url reads; Command jobs fill one command line per item (dict and
                    positional placeholders, data references staged), store declared outputs,
                    turn a non-zero exit into CommandFailed with the log tail, refuse a bad item
                    on the client; Command(image=...) runs in a user's image on backends with
                    images and is refused, naming the reason, on backends without
"""
from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path

import pytest

import spmd
from ..images import base as baseimage
from .. import docker_engine

from . import data_functions as fn
from .fixtures import WAIT, BackendFixtures

TOOL = """\
#!/bin/sh
# count BYTES-FILE LABEL OUT: writes "LABEL <bytes>" to OUT and says so
n=$(wc -c < "$1" | tr -d ' ')
echo "$2 $n" > "$3"
echo "counted $n bytes for $2"
"""


def _random_file(path: Path, size: int) -> Path:
    path.write_bytes(secrets.token_bytes(size))
    return path


class DataContract(BackendFixtures):
    """spmd.File, spmd.outputs(), job.download and spmd.Command on the backend under test."""

    # -- data references ------------------------------------------------------------------

    def test_data_file_arrives_as_a_local_path_with_its_bytes(self, spmd_knot, tmp_path):
        first = _random_file(tmp_path / "dwi.nii.gz", 300_000)
        second = _random_file(tmp_path / "other.bin", 10)
        job = spmd_knot(fn.describe_file).map([spmd.File(first), spmd.File(second)])
        results = job.results(timeout=WAIT)
        assert results == [
            {"type": "str", "is_file": True, "name": "dwi.nii.gz",
             "sha256": hashlib.sha256(first.read_bytes()).hexdigest()},
            {"type": "str", "is_file": True, "name": "other.bin",
             "sha256": hashlib.sha256(second.read_bytes()).hexdigest()}]
        assert job.uploads.uploaded_bytes == 300_010

    def test_data_second_map_over_the_same_files_uploads_nothing(self, spmd_knot, spmd_store,
                                                                 tmp_path):
        files = [_random_file(tmp_path / f"s{i}.bin", 50_000 + i) for i in range(3)]
        items = [spmd.File(f) for f in files] + [spmd.File(files[0])]  # one twice
        first = spmd_knot(fn.describe_file).map(items)
        assert first.uploads.uploaded_objects == 3
        assert first.uploads.uploaded_bytes == 150_003
        blobs = set(spmd_store.list("data/"))
        second = spmd_knot(fn.describe_file).map(items)
        assert second.uploads.uploaded_objects == 0 and second.uploads.uploaded_bytes == 0
        assert second.uploads.bytes == 150_003 and second.uploads.references == 3
        assert set(spmd_store.list("data/")) == blobs
        assert [r["sha256"] for r in second.results(timeout=WAIT)] == \
            [hashlib.sha256(f.read_bytes()).hexdigest() for f in files + files[:1]]
        assert first.results(timeout=WAIT) == second.results(timeout=WAIT)

    def test_data_folder_arrives_with_its_tree(self, spmd_knot, tmp_path):
        root = tmp_path / "sub-01"
        (root / "anat").mkdir(parents=True)
        (root / "empty").mkdir()
        (root / "anat" / "T1w.txt").write_text("t1")
        (root / "README").write_text("subject one")
        job = spmd_knot(fn.describe_tree).map([spmd.File(root)])
        assert job.results(timeout=WAIT) == [[("README", "subject one"), ("anat/T1w.txt", "t1"),
                                              ("empty/", "")]]

    def test_data_outputs_come_back_with_download_and_urls(self, spmd_knot, tmp_path):
        payload = _random_file(tmp_path / "in.bin", 70_000)
        job = spmd_knot(fn.write_outputs).map([spmd.Args("a", spmd.File(payload)),
                                               spmd.Args("b")])
        assert job.results(timeout=WAIT) == ["a", "b"]
        paths = job.download(0, tmp_path / "out0")
        assert sorted(p.relative_to(tmp_path / "out0").as_posix() for p in paths) == \
            ["result.txt", "sub/copy.bin"]
        assert (tmp_path / "out0" / "result.txt").read_text() == "result of a\n"
        assert (tmp_path / "out0" / "sub" / "copy.bin").read_bytes() == payload.read_bytes()
        urls = job.output_urls(1)
        assert sorted(urls) == ["result.txt", "sub/copy.bin"]
        with spmd.open_url(urls["result.txt"]) as handle:
            assert handle.read() == b"result of b\n"

    def test_data_missing_file_is_refused_on_the_client(self, tmp_path):
        with pytest.raises(spmd.DataError, match="no such file or folder"):
            spmd.File(tmp_path / "nope.nii.gz")

    # -- command jobs -----------------------------------------------------------------------

    def test_command_fills_one_command_line_per_item(self, spmd_knot, tmp_path):
        files = [_random_file(tmp_path / f"in{i}.bin", 1000 * (i + 1)) for i in range(3)]
        cmd = spmd.Command(["sh", "-c", 'n=$(wc -c < "$1" | tr -d " "); echo "$2 $n" > "$2.txt";'
                            ' echo "wrote $2"', "sh", "{data}", "{label}"],
                           outputs=["{label}.txt"])
        job = spmd_knot(cmd).map([{"data": spmd.File(f), "label": f"s{i}"}
                                  for i, f in enumerate(files)])
        results = job.results(timeout=WAIT)
        assert [r.exit_code for r in results] == [0, 0, 0]
        assert [r.log for r in results] == ["wrote s0", "wrote s1", "wrote s2"]
        for i, result in enumerate(results):
            with spmd.open_url(result.outputs[f"s{i}.txt"]) as handle:
                assert handle.read() == f"s{i} {1000 * (i + 1)}\n".encode()
        assert "wrote s1" in job.logs(1)

    def test_command_positional_placeholders(self, spmd_knot):
        cmd = spmd.Command(["sh", "-c", 'echo "$1-$2"', "sh", "{0}", "{1}"])
        job = spmd_knot(cmd).map([("a", 1), ("b", 2)], starmap=True)
        assert [r.log for r in job.results(timeout=WAIT)] == ["a-1", "b-2"]

    def test_command_nonzero_exit_is_command_failed_with_the_log_tail(self, spmd_knot):
        cmd = spmd.Command(["sh", "-c", 'echo "working on $1"; echo "bad input $1" >&2; exit 3',
                            "sh", "{0}"])
        job = spmd_knot(cmd).map(["x", "y"])
        for i, future in enumerate(job.futures):
            error = future.exception(timeout=WAIT)
            assert isinstance(error, spmd.CommandFailed), error
            assert error.exit_code == 3
            assert "bad input " + "xy"[i] in error.log_tail
            assert "exited with status 3" in str(error)

    def test_command_missing_declared_output_is_command_failed(self, spmd_knot):
        cmd = spmd.Command(["sh", "-c", "echo done"], outputs=["never.txt"])
        error = spmd_knot(cmd).map([{}]).futures[0].exception(timeout=WAIT)
        assert isinstance(error, spmd.CommandFailed) and "never.txt" in str(error)

    def test_command_item_without_a_placeholder_is_refused_on_the_client(self, spmd_knot):
        cmd = spmd.Command(["echo", "{subject}"])
        with pytest.raises(spmd.CommandSpecError, match=r"item 1 has no value for placeholder \{subject\}"):
            spmd_knot(cmd).map([{"subject": "01"}, {"session": "02"}])

    def test_command_in_a_user_image(self, spmd_knot, spmd_backend, tmp_path):
        """With images: a user's image (a tool on top of a Python base) runs the command. Without
        images (a process backend): image= is refused before anything is submitted."""
        cmd_argv = ["count", "{data}", "{label}", "out.txt"]
        if not type(spmd_backend).uses_images:
            with pytest.raises(spmd.CommandSpecError, match="without container images"):
                spmd_knot(spmd.Command(cmd_argv, image="any/image:1")).map([{"data": "x",
                                                                             "label": "y"}])
            return
        tag = user_image_with_tool(spmd_backend.settings.get("base_image"))
        payload = _random_file(tmp_path / "in.bin", 4321)
        cmd = spmd.Command(cmd_argv, image=tag, outputs=["out.txt"])
        job = spmd_knot(cmd).map([{"data": spmd.File(payload), "label": "sub-01"}])
        [result] = job.results(timeout=WAIT)
        assert result.log == "counted 4321 bytes for sub-01"
        job.download(0, tmp_path / "back")
        assert (tmp_path / "back" / "out.txt").read_text() == "sub-01 4321\n"


def user_image_with_tool(base_image: str | None) -> str:
    """A user's image: the Python base plus a `count` tool; built once per engine (by content)."""
    base = baseimage.resolve(base_image)
    digest = hashlib.sha256((base + TOOL).encode()).hexdigest()[:12]
    tag = f"spmd-test-user-tool:{digest}"
    if not docker_engine.image_exists(tag):
        with tempfile.TemporaryDirectory() as context:
            Path(context, "count").write_text(TOOL)
            os.chmod(Path(context, "count"), 0o755)
            Path(context, "Dockerfile").write_text(
                f"FROM {base}\nCOPY count /usr/local/bin/count\n"
                'ENTRYPOINT ["/bin/echo", "an entrypoint spmd must not use"]\n')
            docker_engine.client().images.build(path=context, tag=tag, rm=True, pull=False,
                                                network_mode="none")
    return tag
