"""Bounded logs on the real local backend: a task printing hundreds of MB in a loop leaves its
last log_limit bytes on disk, at no moment much more, and the log says it was cut."""
import os
from pathlib import Path

import pytest

import spmd
from spmd import layout

pytestmark = pytest.mark.docker

LIMIT = 1 << 20
PRINTED = 300 << 20


def flood(n_bytes):
    """Print n_bytes in 1 MiB lines; return the largest size this attempt's log reached."""
    import os
    import sys
    root = os.environ["SPMD_STORE_URL"][len("file://"):]
    log = (f"{root}/spmd/jobs/{os.environ['SPMD_JOB_ID']}/queue/run/"
           f"{os.environ['AWS_BATCH_JOB_ARRAY_INDEX']}-a{os.environ.get('SPMD_ATTEMPT', '1')}.log")
    line, largest = "x" * ((1 << 20) - 1) + "\n", 0
    for _ in range(n_bytes >> 20):
        sys.stdout.write(line)
        sys.stdout.flush()
        largest = max(largest, os.path.getsize(log) if os.path.exists(log) else 0)
    print("the last line", flush=True)
    return largest


def test_a_task_printing_in_a_loop_keeps_the_last_log_limit_bytes(local, engine):
    config = {**local, "log_limit": LIMIT}
    job = spmd.Knot(flood, config=config).map([PRINTED])
    largest = job.results(timeout=300)[0]
    assert 0 < largest <= 2 * LIMIT + (1 << 20)  # cut at 1.5x the limit, a read or two late
    path = Path(local["store_dir"]) / "spmd" / layout.log_key(job.id, 0)
    assert path.stat().st_size <= LIMIT + 4096
    text = job.logs(0)
    assert text.startswith("spmd: the log was cut here: ") and "log_limit 1.0MiB" in text
    dropped = int(text.split("here: ")[1].split()[0])
    assert dropped > PRINTED - 2 * LIMIT
    assert text.rstrip().endswith("the last line")
    data, length = job.backend.queue.log_part(job.handle, 0, -100)
    assert length == path.stat().st_size and data.endswith(b"the last line\n") and len(data) == 100


def count_slowly(n):
    import time
    for i in range(n):
        print(f"line {i}", flush=True)
        time.sleep(0.02)
    return n


def test_spmd_logs_follow_shows_each_line_once_as_it_comes(local, engine):
    import subprocess
    import sys
    job = spmd.Knot(count_slowly, config=local).map([150])
    follow = subprocess.run([sys.executable, "-m", "spmd.cli", "logs", job.id, "0", "--follow"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "SPMD_STORE_DIR": local["store_dir"]})
    assert follow.returncode == 0, follow.stderr
    lines = [line for line in follow.stdout.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(150)]
