"""Frames (pickle 5, buffers out of band) and the zero-copy data path on the local store."""
import os
import tracemalloc

import numpy as np
import pytest

from spmd import codec, protocol, shards
from spmd.stores.directory import DirectoryStore

MB = 2**20


def test_frame_round_trip_keeps_arrays_out_of_the_pickle_stream():
    arrays = [np.arange(1000, dtype=np.int32), np.ones((50, 40), order="F")]
    parts = codec.dumps_frame({"a": arrays, "n": 5})
    assert max(len(p) for p in parts[:2]) < 1000  # header and stream: no array bytes in-band
    value = codec.loads_frame(b"".join(parts))
    assert value["n"] == 5
    for got, want in zip(value["a"], arrays):
        assert got.dtype == want.dtype and np.array_equal(got, want)
        assert got.flags.writeable
    assert value["a"][1].flags.f_contiguous


def test_non_contiguous_array_and_plain_pickles_still_load():
    strided = np.arange(100)[::3]
    assert np.array_equal(codec.loads_frame(b"".join(codec.dumps_frame(strided))), strided)
    assert codec.loads(codec.dumps({"plain": [1, 2]})) == {"plain": [1, 2]}


def test_pickled_values_nest_their_buffers_in_the_frame():
    inner = codec.Pickled.of(np.full(10_000, 7, dtype=np.int64))
    parts = codec.dumps_frame([("ok", inner), ("ok", codec.Pickled.of("text"))])
    assert any(isinstance(p, memoryview) and p.nbytes == 80_000 for p in parts)
    (_, first), (_, second) = codec.loads_frame(memoryview(bytearray(b"".join(parts))))
    assert (first.load() == 7).all() and second.load() == "text"


def test_unpicklable_value_fails_when_pickled_alone():
    import threading
    with pytest.raises(TypeError):
        codec.Pickled.of(threading.Lock())


def traced_peak(fn):
    tracemalloc.start()
    try:
        value = fn()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def mapped_file(array) -> str | None:
    """The file whose map holds the array's memory (/proc/self/maps), None for memory of
    this process's own."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= address < high:
                path = fields[5].strip() if len(fields) > 5 else ""
                return path if path.startswith("/") else None
    return None


def test_local_store_writes_a_big_array_from_its_memory_and_maps_it_in_the_task(tmp_path):
    store = DirectoryStore(tmp_path)
    array = np.random.default_rng(1).integers(0, 255, 32 * MB, dtype=np.uint8)
    _, write_peak = traced_peak(lambda: store.put_parts(
        "s.bin", shards.pack_parts([codec.dumps_calls([((array,), {})], [0])])))
    calls, read_peak = traced_peak(lambda: codec.loads_frame(shards.read(store, "s.bin", 0)))
    ((got,), _), = calls
    # Written from the array's memory; read by mapping the shard: no copy at all.
    assert write_peak < MB, write_peak
    assert read_peak < MB, read_peak
    assert mapped_file(got) == str(store.path("s.bin"))
    assert np.array_equal(got, array)
    before = store.path("s.bin").read_bytes()
    assert got.flags.writeable
    got[:] = 255 - got  # copy-on-write: the task's change stays in the task
    assert store.path("s.bin").read_bytes() == before
    assert np.array_equal(codec.loads_frame(shards.read(store, "s.bin", 0))[0][0][0], array)


def double_in_place(x):
    x *= 2
    return x


def test_a_task_changes_its_input_array_in_place_and_the_shard_stays(tmp_path, monkeypatch):
    from spmd import layout
    from spmd.batch_queue import Resources
    from spmd.layout import Manifest
    from spmd.task import worker
    monkeypatch.setenv(protocol.INFRA_LOST, "0")
    store = DirectoryStore(tmp_path)
    array = np.arange(MB, dtype=np.float64)
    store.put(layout.function_key("j"), codec.dumps_function(double_in_place))
    store.put_parts(layout.shard_key("j", 0),
                    shards.pack_parts([codec.dumps_calls([((array,), {}), ((array.copy(),), {})],
                                                          [0, 1])]))
    store.put(layout.manifest_key("j"), Manifest(
        job_id="j", name="j", backend="local", profile=None, n_items=2, chunksize=2,
        tasks_per_shard=1, image="", resources=Resources()).to_json())
    shard = store.path(layout.shard_key("j", 0)).read_bytes()
    assert worker.run_task(store, "j", 0, 1)
    results = protocol.read_output(store, "j", 0).results
    # Each call doubled its own input in place, and got it as sent.
    assert [np.array_equal(value.load(), array * 2) for _, value in results] == [True, True]
    assert store.path(layout.shard_key("j", 0)).read_bytes() == shard


def test_task_output_round_trip_without_a_copy(tmp_path):
    store = DirectoryStore(tmp_path)
    array = np.arange(4 * MB, dtype=np.float64)  # 32 MB
    output = protocol.TaskOutput(
        task=2, attempt=1, final=True, results=[("ok", codec.Pickled.of(array))],
        provenance=protocol.Provenance(0.0, 1.0, 1, 0, "h", "", "3.11"))
    _, write_peak = traced_peak(lambda: protocol.write_output(store, "j", output))
    value, read_peak = traced_peak(lambda: protocol.read_output(store, "j", 2).results[0][1].load())
    assert write_peak < MB and read_peak < array.nbytes + MB, (write_peak, read_peak)
    assert np.array_equal(value, array)
    assert protocol.read_output(store, "j", 3) is None


def test_a_result_is_the_clients_own_memory_not_a_map_of_the_output(tmp_path):
    # What the client verified (spmd.integrity) is what it holds: a task of the job that
    # rewrites the output in place afterwards changes neither the value nor the file's
    # integrity record, and the user changing the value leaves the output as it was.
    store = DirectoryStore(tmp_path)
    array = np.arange(MB, dtype=np.float64)
    output = protocol.TaskOutput(
        task=0, attempt=1, final=True, results=[("ok", codec.Pickled.of(array))],
        provenance=protocol.Provenance(0.0, 1.0, 1, 0, "h", "", "3.11"))
    protocol.write_output(store, "j", output)
    path = store.path(protocol.layout.output_key("j", 0))
    written = path.read_bytes()
    value = protocol.read_output(store, "j", 0).results[0][1].load()
    assert mapped_file(value) is None
    with open(path, "r+b") as handle:  # in place, as a task of the job could
        handle.seek(len(written) - array.nbytes)
        handle.write(bytes(array.nbytes))
    assert np.array_equal(value, array)
    path.write_bytes(written)
    value[:] = -1
    assert path.read_bytes() == written
