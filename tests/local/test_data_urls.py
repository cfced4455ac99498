"""Data where it lives on the local backend (beyond the kit's UrlDataContract): HTTP inputs from
a server on 127.0.0.1 fetched by the host (tasks have no network), a local folder as outputs_to,
an input the host cannot fetch, and the report's inputs and destinations."""
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

import spmd
from spmd.testing import data_functions as fn

pytestmark = pytest.mark.docker
WAIT = 180


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's folder; GET of a name starting with 'broken' fails (HEAD works)."""

    def do_GET(self):
        if self.path.lstrip("/").startswith("broken"):
            self.send_error(500, "disk on fire")
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **kw: _Handler(*a, directory=str(root), **kw))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_inputs_are_fetched_by_the_host_for_tasks_without_network(local, engine, http_root):
    root, base = http_root
    bodies = {f"sub-0{i}.nii.gz": bytes([i]) * (10_000 * i) for i in (1, 2)}
    for name, body in bodies.items():
        (root / name).write_bytes(body)
    job = spmd.Knot(fn.describe_file, config=local).map(
        [spmd.File(f"{base}/{name}") for name in bodies])
    assert [r["sha256"] for r in job.results(timeout=WAIT)] == \
        [hashlib.sha256(b).hexdigest() for b in bodies.values()]
    assert job.uploads.uploaded_bytes == 0 and job.uploads.remote_bytes == 30_000
    cache = Path(local["store_dir"]) / "spmd" / "data" / "urls"
    assert sorted(p.name for p in cache.glob("*/[!.]*")) == sorted(bodies)  # once each, by version
    rows = job.report().rows
    assert rows[0].inputs[0].startswith(f"{base}/sub-01.nii.gz@") and rows[0].outputs_to == ""


def test_a_task_cannot_write_into_the_input_cache(local, engine, http_root):
    root, base = http_root
    (root / "data.bin").write_bytes(b"original")
    job = spmd.Knot(fn.try_to_overwrite, config=local).map([spmd.File(f"{base}/data.bin")])
    assert job.results(timeout=WAIT) == ["refused: Read-only file system"]


def test_an_input_the_host_cannot_fetch_fails_its_item_naming_the_url(local, engine, http_root):
    root, base = http_root
    (root / "broken.bin").write_bytes(b"x" * 10)
    (root / "fine.bin").write_bytes(b"y" * 10)
    job = spmd.Knot(fn.describe_file, config=local).map(
        [spmd.File(f"{base}/broken.bin"), spmd.File(f"{base}/fine.bin")], chunksize=1)
    error = job.futures[0].exception(timeout=WAIT)
    assert isinstance(error, spmd.TaskLost), error
    assert f"cannot fetch {base}/broken.bin" in str(error)
    assert job.futures[1].result(timeout=WAIT)["name"] == "fine.bin"  # the other item goes on


def test_outputs_to_a_local_folder(local, engine, tmp_path):
    dest = tmp_path / "derivatives"
    job = spmd.Knot(fn.write_label, config=local).map(
        [{"subject": "sub-01"}, {"subject": "sub-02"}], outputs_to=str(dest / "{subject}"))
    assert job.results(timeout=WAIT) == ["sub-01", "sub-02"]
    assert (dest / "sub-02" / "label.txt").read_text() == "sub-02\n"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == \
        ["sub-01/label.txt", "sub-02/label.txt"]
    assert job.output_urls(0) == {"label.txt": f"{dest}/sub-01/label.txt"}
    with spmd.open_url(job.output_urls(1)["label.txt"]) as handle:
        assert handle.read() == b"sub-02\n"
    assert [row.outputs_to for row in job.report().rows] == [f"{dest}/sub-01/", f"{dest}/sub-02/"]
    # after attach, from the store alone
    again = spmd.attach(job.id, config=local)
    assert again.output_urls(1) == {"label.txt": f"{dest}/sub-02/label.txt"}


def read_own_and_theirs(own, theirs):
    """This task's URL input, and what reading another job's fetched URL input gives."""
    import os
    try:
        open(theirs).read()
        seen = "read"
    except OSError as exc:
        seen = exc.strerror
    return open(own).read(), seen, os.listdir(os.path.dirname(os.path.dirname(own)))


def test_a_task_reads_its_own_jobs_fetched_urls_and_no_other_jobs(local, engine, http_root):
    root, base = http_root
    (root / "sub-01.txt").write_text("subject one")
    (root / "sub-02.txt").write_text("subject two")
    other = spmd.Knot(fn.describe_file, config=local).map([spmd.File(f"{base}/sub-01.txt")])
    assert other.results(timeout=WAIT)[0]["name"] == "sub-01.txt"
    cache = Path(local["store_dir"]) / "spmd" / "data" / "urls"
    theirs = next(cache.glob("*/sub-01.txt"))  # in the store's cache, fetched by the host
    job = spmd.Knot(read_own_and_theirs, config=local).map(
        [(spmd.File(f"{base}/sub-02.txt"), str(theirs))], starmap=True)
    own, seen, listed = job.results(timeout=WAIT)[0]
    assert (own, seen) == ("subject two", "No such file or directory")
    assert theirs.parent.name not in listed and len(listed) == 1  # its own input's folder only
