"""ObjectStore alone: bytes by key, atomic put, range get, sorted prefix listing, delete,
and the conveniences a store may override (``put_parts``, ``get_view``, ``get_mapped``,
``list_after``).

Needs only the ``spmd_store`` fixture (by default the backend's store), so a store that
is not part of a backend (``spmd.stores.libcloud.LibcloudStore`` over some driver) can run it too.
Every key is under ``spmd_scratch``, which is emptied afterwards.
"""
from __future__ import annotations

import threading

import pytest

import spmd
from ..task.worker import open_store

from .fixtures import BackendFixtures

MB = 2**20


class ObjectStoreContract(BackendFixtures):
    """What every ObjectStore does; the worker relies on each of these."""

    def test_store_round_trip_and_overwrite(self, spmd_store, spmd_scratch):
        key = f"{spmd_scratch}a/b/c.bin"
        spmd_store.put(key, b"first")
        assert spmd_store.get(key) == b"first"
        spmd_store.put(key, b"second, longer")
        assert spmd_store.get(key) == b"second, longer"
        assert spmd_store.exists(key)
        spmd_store.put_json(f"{spmd_scratch}m.json", {"n": [1, 2]})
        assert spmd_store.get_json(f"{spmd_scratch}m.json") == {"n": [1, 2]}

    def test_store_range_reads(self, spmd_store, spmd_scratch):
        key = f"{spmd_scratch}digits"
        spmd_store.put(key, b"0123456789")
        assert spmd_store.get(key, 2, 5) == b"234"
        assert spmd_store.get(key, 8) == b"89"
        assert spmd_store.get(key, 0, 1) == b"0"
        assert spmd_store.get(key, 4, 4) == b""
        assert spmd_store.get(key, 0, 10) == b"0123456789"

    def test_store_missing_object_and_idempotent_delete(self, spmd_store, spmd_scratch):
        key = f"{spmd_scratch}never-written"
        with pytest.raises(spmd.ObjectNotFound) as info:
            spmd_store.get(key)
        assert isinstance(info.value, KeyError) and info.value.key == key
        with pytest.raises(spmd.ObjectNotFound):
            spmd_store.get(key, 0, 4)
        assert spmd_store.exists(key) is False
        spmd_store.delete(key)  # no error when it is already gone
        spmd_store.put(key, b"x")
        spmd_store.delete(key)
        assert spmd_store.exists(key) is False
        assert list(spmd_store.list(spmd_scratch)) == []

    def test_store_empty_object(self, spmd_store, spmd_scratch):
        key = f"{spmd_scratch}empty"
        spmd_store.put(key, b"")
        assert spmd_store.get(key) == b""
        assert spmd_store.exists(key)
        assert list(spmd_store.list(spmd_scratch)) == [key]

    def test_store_large_object(self, spmd_store, spmd_scratch):
        key = f"{spmd_scratch}large"
        big = bytes(range(256)) * (60 * MB // 256)  # 60 MB, not one repeated byte
        spmd_store.put(key, big)
        assert spmd_store.get(key) == big
        at = 50 * MB + 3
        assert spmd_store.get(key, at, at + 7) == big[at:at + 7]
        assert spmd_store.get(key, len(big) - 5) == big[-5:]

    def test_store_many_objects_list_in_pages(self, spmd_store, spmd_scratch):
        # More keys than one page of any provider's listing (S3 and GCS: 1,000).
        keys = [f"{spmd_scratch}out/{i:06d}.pkl" for i in range(1200)]
        for i, key in enumerate(reversed(keys)):
            spmd_store.put(key, str(i).encode())
        listed = list(spmd_store.list(f"{spmd_scratch}out/"))
        assert listed == keys  # every key once, sorted
        assert spmd_store.get(keys[0]) == b"1199" and spmd_store.get(keys[-1]) == b"0"
        assert spmd_store.delete_prefix(f"{spmd_scratch}out/") == 1200
        assert list(spmd_store.list(spmd_scratch)) == []

    def test_store_list_is_sorted_and_prefix_scoped(self, spmd_store, spmd_scratch):
        names = ["jobs/j1/output/000001.pkl", "jobs/j1/output/000000.pkl", "jobs/j1/manifest.json",
                 "jobs/j10/output/000000.pkl", "jobs/j2/x", "jobsfile"]
        for name in names:
            spmd_store.put(spmd_scratch + name, b"1")
        def listed(prefix):
            return [k[len(spmd_scratch):] for k in spmd_store.list(spmd_scratch + prefix)]
        assert listed("jobs/j1/") == ["jobs/j1/manifest.json", "jobs/j1/output/000000.pkl",
                                      "jobs/j1/output/000001.pkl"]
        assert listed("jobs/j1/output/") == ["jobs/j1/output/000000.pkl", "jobs/j1/output/000001.pkl"]
        assert listed("jobs/j1") == listed("jobs/j1/") + ["jobs/j10/output/000000.pkl"]
        assert listed("jobs/j1/man") == ["jobs/j1/manifest.json"]
        assert listed("jobs") == sorted(names)
        assert listed("") == sorted(names)
        assert listed("nothing/") == []

    def test_store_put_is_atomic_for_readers(self, spmd_store, spmd_scratch):
        key = f"{spmd_scratch}swapped"
        old, new = b"a" * (2 * MB), b"b" * (2 * MB)
        spmd_store.put(key, old)
        seen: set = set()
        errors: list = []
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                try:
                    data = spmd_store.get(key)
                except Exception as exc:  # a reader must never see a missing object either
                    errors.append(exc)
                    return
                seen.add((data[:1] + data[-1:], len(data)))

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for _ in range(10):
                spmd_store.put(key, new)
                spmd_store.put(key, old)
        finally:
            stop.set()
            thread.join()
        assert not errors, errors
        assert seen and seen <= {(b"aa", 2 * MB), (b"bb", 2 * MB)}, "a reader saw a partial object"
        assert list(spmd_store.list(spmd_scratch)) == [key]  # no temporary objects left

    def test_store_reopens_from_its_url(self, spmd_store, spmd_scratch):
        # The worker opens its job's store from SPMD_STORE_URL through the plugin registry.
        key = f"{spmd_scratch}by-url"
        spmd_store.put(key, b"same store")
        again = open_store(spmd_store.url)
        assert isinstance(again, spmd.ObjectStore)
        assert again.url == spmd_store.url
        assert again.get(key) == b"same store"
        again.put(f"{key}-2", b"written back")
        assert spmd_store.get(f"{key}-2") == b"written back"

    # -- streaming files (data references, task outputs) -------------------------------

    def test_store_put_file_and_get_file_round_trip(self, spmd_store, spmd_scratch, tmp_path):
        # 20 MB spans several parts of a chunked or multipart transfer; the bytes are not
        # periodic, so a chunk written at the wrong offset is caught.
        import hashlib
        source = tmp_path / "big.bin"
        with open(source, "wb") as handle:
            for i in range(20 * 64):
                handle.write(hashlib.sha256(str(i).encode()).digest() * 512)  # 16 KiB each
        key = f"{spmd_scratch}files/big.bin"
        spmd_store.put_file(key, source)
        assert spmd_store.get(key, 5 * MB, 5 * MB + 7) == source.read_bytes()[5 * MB:5 * MB + 7]
        target = tmp_path / "out" / "copy.bin"
        target.parent.mkdir()
        spmd_store.get_file(key, target)
        assert target.read_bytes() == source.read_bytes()
        assert sorted(p.name for p in target.parent.iterdir()) == ["copy.bin"]  # no temp left

    def test_store_put_file_of_an_empty_file_and_get_file_replaces(self, spmd_store, spmd_scratch,
                                                                     tmp_path):
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        key = f"{spmd_scratch}files/empty"
        spmd_store.put_file(key, empty)
        assert spmd_store.get(key) == b""
        target = tmp_path / "target"
        target.write_bytes(b"old content")
        spmd_store.get_file(key, target)
        assert target.read_bytes() == b""

    def test_store_get_file_of_a_missing_key_is_object_not_found(self, spmd_store, spmd_scratch,
                                                                 tmp_path):
        folder = tmp_path / "downloads"
        folder.mkdir()
        with pytest.raises(spmd.ObjectNotFound):
            spmd_store.get_file(f"{spmd_scratch}files/none", folder / "x")
        assert list(folder.iterdir()) == []  # neither the file nor a temporary one

    def test_store_put_parts_get_view_get_mapped_and_list_after(self, spmd_store, spmd_scratch):
        # A frame's parts are written as one object; a view reads it (or a range) back.
        key = f"{spmd_scratch}frame"
        big = bytes(range(256)) * (3 * MB // 256)
        parts = [b"head", memoryview(big), bytearray(b"tail")]
        spmd_store.put_parts(key, parts)
        whole = b"head" + big + b"tail"
        assert spmd_store.get(key) == whole
        assert bytes(spmd_store.get_view(key)) == whole
        assert bytes(spmd_store.get_view(key, 4, 4 + MB)) == big[:MB]
        assert bytes(spmd_store.get_view(key, len(whole) - 4)) == b"tail"
        view = spmd_store.get_view(key, 0, 8)
        if not view.readonly:  # a writable view is private: writing to it changes no object
            view[0] = ord("H")
            assert spmd_store.get(key, 0, 1) == b"h"
        with pytest.raises(spmd.ObjectNotFound):
            spmd_store.get_view(f"{spmd_scratch}missing")
        # A mapped range is the same bytes, from any offset; writing to it changes no object.
        assert bytes(spmd_store.get_mapped(key, 4, 4 + MB)) == big[:MB]
        assert bytes(spmd_store.get_mapped(key, 4097, 4100)) == whole[4097:4100]
        assert bytes(spmd_store.get_mapped(key, len(whole))) == b""
        mapped = spmd_store.get_mapped(key, 0, 8)
        if not mapped.readonly:
            mapped[0] = ord("H")
            assert spmd_store.get(key, 0, 1) == b"h"
        with pytest.raises(spmd.ObjectNotFound):
            spmd_store.get_mapped(f"{spmd_scratch}missing")
        # Listing after a key gives only the keys sorted after it.
        keys = [f"{spmd_scratch}out/{i:06d}.pkl" for i in range(5)]
        for k in keys:
            spmd_store.put(k, b"1")
        prefix = f"{spmd_scratch}out/"
        assert list(spmd_store.list_after(prefix, keys[1])) == keys[2:]
        assert list(spmd_store.list_after(prefix, "")) == keys
        assert list(spmd_store.list_after(prefix, keys[-1])) == []
