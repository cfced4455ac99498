"""How many copies of a big array the data path makes: tracemalloc's peak at each stage.

    python benchmarks/zero_copy.py --mb 400

One array of --mb megabytes goes the whole way on the local store, in this process (no
Docker, so every stage is measured by the same tracemalloc): the client writes the job
(function, a shard, the manifest), the worker runs the task (an identity function) and
writes its output, the client reads the output back into a value. Each stage's peak of
Python-tracked allocations (numpy's included) is printed as a multiple of the array's
size: 0.00 means the stage allocated nothing of the array's size, 1.00 one whole buffer.
A read stage cannot go below 1.00: the bytes have to land somewhere. On the new path that
one buffer is the memory the array is then built on; on the old one, the bytes read were
unpickled into another copy (and a result was pickled inside the output's pickle).

With ``SPMD_SOURCE=/path`` the same stages run on another checkout of spmd (e.g. the
code before zero-copy payloads, ``git archive <commit> spmd spmd_local``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.environ.get("SPMD_SOURCE") or
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from spmd import codec, layout, shards
from spmd.task import worker
from spmd.batch_queue import Resources  # noqa: E402
from spmd.layout import Manifest  # noqa: E402
from spmd.stores.directory import DirectoryStore  # noqa: E402

NEW = hasattr(codec, "dumps_frame")


def identity(x):
    return x


def write_job(store, job_id: str, array) -> None:
    calls = [((array,), {})]
    store.put(layout.function_key(job_id), codec.dumps_function(identity))
    payload = codec.dumps_calls(calls, 0)
    if NEW:
        store.put_parts(layout.shard_key(job_id, 0), shards.pack_parts([payload]))
    else:
        store.put(layout.shard_key(job_id, 0), shards.pack([payload]))
    manifest = Manifest(job_id=job_id, name="zc", backend="local", profile=None, n_items=1,
                        chunksize=1, tasks_per_shard=1, image="", resources=Resources())
    store.put(layout.manifest_key(job_id), manifest.to_json())


def read_result(store, job_id: str):
    if NEW:
        from spmd import protocol
        return protocol.read_output(store, job_id, 0).results[0][1].load()
    output = codec.loads(store.get(layout.output_key(job_id, 0)))
    return codec.loads(output["results"][0][1])


def measure(stage, fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, peak, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=400)
    size = parser.parse_args().mb * 2**20
    array = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    root = tempfile.mkdtemp(prefix="spmd-zc-")
    store = DirectoryStore(root)
    job = "zc-job"
    print(f"{'new' if NEW else 'old'} data path, one {size / 2**20:.0f} MB array, identity function")
    _, peak, s = measure("client write", lambda: write_job(store, job, array))
    print(f"client writes the job    peak {peak / size:5.2f} × array   {s:6.2f} s")
    _, peak, s = measure("worker", lambda: worker.run_task(store, job, 0, 1))
    print(f"worker runs the task     peak {peak / size:5.2f} × array   {s:6.2f} s")
    value, peak, s = measure("client read", lambda: read_result(store, job))
    print(f"client reads the result  peak {peak / size:5.2f} × array   {s:6.2f} s")
    try:
        assert np.array_equal(value, array), "the result differs from the input"
    finally:
        del value
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
