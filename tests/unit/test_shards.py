import numpy as np

from spmd import codec, shards
from spmd.stores.directory import DirectoryStore


def test_pack_and_read_every_payload(tmp_path):
    store = DirectoryStore(tmp_path)
    payloads = [b"", b"a", b"bc" * 1000, bytes(range(256))]
    store.put("s.bin", shards.pack(payloads))
    assert [bytes(shards.read(store, "s.bin", i)) for i in range(4)] == payloads


def test_read_is_two_range_reads_and_the_payload_is_mapped(tmp_path):
    store = DirectoryStore(tmp_path)
    store.put_parts("s.bin", shards.pack_parts([b"x" * 1_000_000, b"needle", b"y" * 1_000_000]))
    reads = []
    original_get, original_view = store.get, store.get_mapped

    def counting_get(key, start=None, end=None):
        reads.append(("get", start, end))
        return original_get(key, start, end)

    def counting_view(key, start=None, end=None):
        reads.append(("mapped", start, end))
        return original_view(key, start, end)

    store.get, store.get_mapped = counting_get, counting_view
    assert shards.read(store, "s.bin", 1) == b"needle"
    assert [kind for kind, _, _ in reads] == ["get", "mapped"]
    assert reads[0][2] - reads[0][1] == 16 and reads[1][2] - reads[1][1] == len(b"needle")


def test_frames_in_a_shard_start_aligned_so_their_arrays_do(tmp_path):
    store = DirectoryStore(tmp_path)
    frames = [codec.dumps_frame([np.full(n, n, dtype=np.float64)]) for n in (3, 300_000, 5)]
    store.put_parts("s.bin", shards.pack_parts([b"odd-sized", *frames]))
    for i, n in enumerate((3, 300_000, 5), start=1):
        view = shards.read(store, "s.bin", i)
        (array,) = codec.loads_frame(view)
        assert array.shape == (n,) and (array == n).all()
    big = codec.loads_frame(shards.read(store, "s.bin", 2))[0]
    assert big.flags.aligned and big.flags.writeable


def test_plan_few_shards():
    assert shards.plan([100] * 25_000) == 25_000  # small inputs: one shard
    per = shards.plan([1_000_000] * 1000, target_bytes=64 * 2**20)
    assert 1000 / per <= 16
    assert shards.plan([]) == 1
