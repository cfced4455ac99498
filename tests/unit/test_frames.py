"""Frames (pickle 5, buffers out of band) and the zero-copy data path on the local store."""
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


def test_local_store_writes_a_big_array_from_its_memory_and_reads_it_once(tmp_path):
    store = DirectoryStore(tmp_path)
    array = np.random.default_rng(1).integers(0, 255, 32 * MB, dtype=np.uint8)
    _, write_peak = traced_peak(lambda: store.put_parts(
        "s.bin", shards.pack_parts([codec.dumps_calls([((array,), {})], [0])])))
    calls, read_peak = traced_peak(lambda: codec.loads_frame(shards.read(store, "s.bin", 0)))
    ((got,), _), = calls
    # Written from the array's memory; read once into the memory the value is built on.
    assert write_peak < MB, write_peak
    assert read_peak < array.nbytes + MB, read_peak  # one read, no second copy
    assert np.array_equal(got, array)
    got[0] = 255 - got[0]  # the value's memory is its own: writing to it changes no object
    assert np.array_equal(codec.loads_frame(shards.read(store, "s.bin", 0))[0][0][0], array)


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
