from spmd import shards
from spmd_local.store import LocalStore


def test_pack_and_read_every_payload(tmp_path):
    store = LocalStore(tmp_path)
    payloads = [b"", b"a", b"bc" * 1000, bytes(range(256))]
    store.put("s.bin", shards.pack(payloads))
    assert [shards.read(store, "s.bin", i) for i in range(4)] == payloads


def test_read_is_two_small_range_reads(tmp_path):
    store = LocalStore(tmp_path)
    store.put("s.bin", shards.pack([b"x" * 1_000_000, b"needle", b"y" * 1_000_000]))
    reads = []
    original = store.get

    def counting_get(key, start=None, end=None):
        reads.append((start, end))
        return original(key, start, end)

    store.get = counting_get
    assert shards.read(store, "s.bin", 1) == b"needle"
    assert len(reads) == 2
    assert all(end - start <= 16 for start, end in reads)


def test_plan_few_shards():
    assert shards.plan([100] * 25_000) == 25_000  # small inputs: one shard
    per = shards.plan([1_000_000] * 1000, target_bytes=64 * 2**20)
    assert 1000 / per <= 16
    assert shards.plan([]) == 1
