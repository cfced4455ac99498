"""spmd.logcap: a log keeps its last limit bytes, says how much was cut, and is read from its end."""
import os

from spmd import logcap


def test_a_capped_log_keeps_its_last_bytes_and_counts_all_it_dropped(tmp_path):
    path = tmp_path / "task.log"
    log = logcap.CappedLog(path, limit=1 << 20)
    line = b"y" * 1023 + b"\n"
    for _ in range(20 * 1024):  # 20 MiB
        log.write(line)
        assert log.size <= (1 << 20) + (1 << 20) + len(line) + 200  # never much above the cut
    log.write(b"the end\n")
    log.close()
    text = path.read_bytes()
    assert len(text) <= 3 << 20 and text.endswith(b"the end\n")
    first, _, rest = text.partition(b"\n")
    dropped = int(first.split(b"here: ")[1].split()[0])
    assert dropped + len(rest) == 20 * 1024 * 1024 + 8  # every byte kept or counted as dropped
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_append_cuts_the_store_log_and_tails_read_from_the_end(tmp_path):
    path = tmp_path / "0.log"
    for attempt in range(5):
        logcap.append(path, f"--- attempt {attempt} ---\n".encode() + b"z\n" * 300_000, limit=1 << 20)
    assert path.stat().st_size <= (1 << 20) + (1 << 20)
    assert path.read_bytes().startswith(b"spmd: the log was cut here: ")
    assert logcap.tail(path, 6) == b"z\nz\nz\n"
    data, length = logcap.read_part(path, length_before := 10)
    assert length == path.stat().st_size and len(data) == length - length_before
    assert logcap.read_part(tmp_path / "none", -5) == (b"", 0)
