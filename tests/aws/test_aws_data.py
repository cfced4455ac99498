"""Data references and a Command job on the AWS backend end to end: S3 (moto) holds the data,
Batch (moto) runs the derived image pulled from the real registry, in Docker."""
import os

import pytest

import spmd
from spmd.testing.data import user_image_with_tool

pytestmark = pytest.mark.docker

DATA_WRITES = ("PutObject", "CreateMultipartUpload", "UploadPart")


def test_command_with_data_references_and_outputs(aws_knot, calls, base_image, tmp_path):
    image = user_image_with_tool(base_image)
    sizes = [5, 9_000_000]  # the second is above boto3's 8 MB multipart threshold
    items = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"sub-0{i}.bin"
        path.write_bytes(os.urandom(size))
        items.append({"data": spmd.File(path), "label": f"sub-0{i}"})
    cmd = spmd.Command(["count", "{data}", "{label}", "out.txt"], image=image, outputs=["out.txt"])

    first = aws_knot(cmd).map(items)
    results = first.results(timeout=300)
    assert [r.log for r in results] == [f"counted {n} bytes for sub-0{i}" for i, n in enumerate(sizes)]
    assert first.uploads.uploaded_bytes == sum(sizes)
    assert any(op == "CreateMultipartUpload" and p["Key"].startswith("data/sha256/")
               for _, op, p in calls.calls)
    for i, size in enumerate(sizes):
        first.download(i, tmp_path / f"back{i}")
        assert (tmp_path / f"back{i}" / "out.txt").read_text() == f"sub-0{i} {size}\n"
        with spmd.open_url(results[i].outputs["out.txt"]) as handle:
            assert handle.read() == f"sub-0{i} {size}\n".encode()

    calls.calls.clear()
    second = aws_knot(cmd).map(items)
    assert second.uploads.uploaded_bytes == 0
    data_writes = [p["Key"] for s, op, p in calls.calls
                   if s == "s3" and op in DATA_WRITES and p.get("Key", "").startswith("data/")]
    assert data_writes == []
    again = second.results(timeout=300)
    assert [(r.exit_code, r.log) for r in again] == [(0, r.log) for r in results]
    assert [r.outputs["out.txt"].split("#")[1] for r in again] == \
        [f"jobs/{second.id}/files/00000{i}/out.txt" for i in range(2)]
