"""The conformance kit on the example plugin's "process" backend (no Docker at all)."""
import os
import signal

import pytest

import spmd.testing


class TestProcess(spmd.testing.BackendContract):
    @pytest.fixture
    def spmd_backend_name(self):
        return "process"

    @pytest.fixture
    def spmd_backend_config(self, tmp_path):
        # A store of this test's own; 2 CPUs, so a task of 2 vcpus runs alone.
        return {"store_dir": str(tmp_path / "store"), "max_vcpus": 2}

    @pytest.fixture
    def spmd_stop_task(self):
        """SIGTERM to the task's process, as a machine shutting down sends it."""
        def stop(job, task):
            wanted = {f"SPMD_JOB_ID={job.id}".encode(), f"AWS_BATCH_JOB_ARRAY_INDEX={task}".encode()}
            found = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/environ", "rb") as environ:
                        if wanted <= set(environ.read().split(b"\0")):
                            found.append(int(pid))
                except OSError:
                    continue
            assert found, f"no process of task {task} of job {job.id}"
            for pid in found:
                os.kill(pid, signal.SIGTERM)
        return stop


def test_capacity_is_shared_by_the_jobs_of_one_store(tmp_path):
    """Beyond the kit: two jobs' schedulers on one store never run more than max_vcpus together."""
    from spmd.testing.functions import slow_triple
    config = {"store_dir": str(tmp_path / "store"), "max_vcpus": 2}
    first = spmd.Knot(slow_triple, vcpus=2, backend="process", config=config).map([1, 2], chunksize=1)
    second = spmd.Knot(slow_triple, vcpus=2, backend="process", config=config).map([3], chunksize=1)
    assert first.results(timeout=120) == [3, 6] and second.results(timeout=120) == [9]
    spans = sorted((job.provenance(i)["started"], job.provenance(i)["ended"])
                   for job, i in ((first, 0), (first, 1), (second, 0)))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"two tasks of 2 vcpus ran at once on 2 vcpus: {spans}"


def flood_own_log(n_mib):
    """Print n_mib MiB in 1 MiB lines; return the largest size this attempt's log file reached
    (the task runs in work/ of its scratch folder, its output goes to ../task.log)."""
    import os
    import sys
    line, largest = "x" * ((1 << 20) - 1) + "\n", 0
    for _ in range(n_mib):
        sys.stdout.write(line)
        sys.stdout.flush()
        largest = max(largest, os.path.getsize("../task.log"))
    print("the last line", flush=True)
    return largest


def test_a_process_task_printing_in_a_loop_keeps_the_last_log_limit_bytes(tmp_path):
    """Beyond the kit: the attempt's own log is capped while the task runs, not only the store's."""
    limit = 1 << 20
    config = {"store_dir": str(tmp_path / "store"), "log_limit": limit}
    job = spmd.Knot(flood_own_log, backend="process", config=config).map([40])
    largest = job.results(timeout=120)[0]
    assert 0 < largest <= 2 * limit + (1 << 20)  # cut at 1.5x the limit, a write or two late
    text = job.logs(0)
    assert text.startswith("spmd: the log was cut here: ") and "log_limit 1.0MiB" in text
    assert int(text.split("here: ")[1].split()[0]) > (40 << 20) - 2 * limit
    assert text.rstrip().endswith("the last line")
