"""Data references: bytes uploaded, wall time and the client's peak memory for a first and a
second map over the same large files (local backend).

    .venv/bin/python benchmarks/data_refs.py --files 2 --megabytes 256
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import spmd


def size_of(path: str) -> int:
    return os.path.getsize(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--megabytes", type=int, default=256)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        paths = []
        for i in range(options.files):
            path = Path(scratch) / f"sub-{i:02d}.bin"
            with open(path, "wb") as handle:
                for _ in range(options.megabytes):
                    handle.write(os.urandom(2**20))
            paths.append(path)
        config = {"store_dir": str(Path(scratch) / "store")}
        knot = spmd.Knot(size_of, config=config)
        knot.ensure_image()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for attempt in ("first", "second"):
            start = time.perf_counter()
            job = knot.map([spmd.File(p) for p in paths])
            submitted = time.perf_counter() - start
            assert job.results(timeout=600) == [p.stat().st_size for p in paths]
            total = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(f"{attempt} map: {job.uploads.references} files, {job.uploads.bytes / 2**20:.0f} MiB "
                  f"referenced, {job.uploads.uploaded_bytes / 2**20:.0f} MiB uploaded in "
                  f"{job.uploads.uploaded_objects} objects; map() {submitted:.2f}s, results "
                  f"{total:.2f}s; client peak RSS {peak / 1024:.0f} MiB (before: {before / 1024:.0f})")


if __name__ == "__main__":
    main()
