"""The Slurm backend beyond the kit: arrays split at MaxArraySize, losses to the infrastructure,
errors before submitting, the task environment, the Docker runtime, and squeue's states."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

import spmd
from spmd import layout
from spmd.batch_queue import CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED
from spmd.testing.fixtures import WAIT, wait_for
from spmd.testing.functions import hog, square
from spmd_slurm import environment, poller, slurm
from spmd_slurm.queue import task_status


def squeue_states(handle: str) -> list[str]:
    ids = [a for a, _, _ in json.loads(handle)["arrays"]]
    return sorted(t.state for t in slurm.queue(ids).values())


def test_arrays_are_split_at_the_clusters_max_array_size(slurm_config, slurm_max_array_size,
                                                          monkeypatch):
    knot = spmd.Knot(square, backend="slurm", config=slurm_config)
    assert knot.backend.queue.array_size() == slurm_max_array_size  # read from scontrol show config
    job = knot.map(range(9), chunksize=1)
    arrays = json.loads(job.handle)["arrays"]
    assert [(offset, n) for _, offset, n in arrays] == [(0, 4), (4, 4), (8, 1)]
    assert len({a for a, _, _ in arrays}) == 3
    assert job.results(timeout=WAIT) == [x * x for x in range(9)]
    # Three arrays, nine tasks: a new client's look at the states is one Slurm command.
    monkeypatch.setattr(poller, "_SHARED", {})
    calls = []
    real_run = slurm.run
    monkeypatch.setattr(slurm, "run", lambda argv, **kw: calls.append(argv[0]) or real_run(argv, **kw))
    states = job.backend.queue.states(job.handle)
    assert calls == ["squeue"] and [states[i].state for i in range(9)] == [SUCCEEDED] * 9
    assert job.logs(8) and "task 8 attempt 1" in job.logs(8)  # the worker's own log line
    # A configured array_size splits further, never beyond the cluster's limit.
    small = spmd.Knot(square, backend="slurm", config={**slurm_config, "array_size": 2})
    assert small.backend.queue.array_size() == 2
    big = spmd.Knot(square, backend="slurm", config={**slurm_config, "array_size": 5000})
    assert big.backend.queue.array_size() == slurm_max_array_size


def test_the_batch_script_carries_resources_and_profile_options(slurm_config):
    config = {**slurm_config, "sbatch_options": ["--comment=spmd-test"]}
    job = spmd.Knot(square, backend="slurm", config=config, vcpus=2, memory="300MiB",
                    timeout=30).map([3])
    assert job.results(timeout=WAIT) == [9]
    text = job.backend.store.get(f"{layout.prefix(job.id)}slurm/array-000000.sh").decode()
    for line in ("#SBATCH --cpus-per-task=2", "#SBATCH --mem=300M", "#SBATCH --partition=debug",
                 "#SBATCH --comment=spmd-test", "#SBATCH --array=0-0", "#SBATCH --requeue"):
        assert line in text, text
    # Slurm's own record of the task agrees with the script.
    array_id = json.loads(job.handle)["arrays"][0][0]
    shown = slurm.run(["scontrol", "show", "job", "--oneliner", array_id])
    assert "MinMemoryNode=300M" in shown and "CPUs/Task=2" in shown and "Comment=spmd-test" in shown
    assert "TimeLimit=00:02:00" in shown  # 30 s + margins, rounded up to minutes


def test_a_requeued_task_runs_again_within_infra_retries(slurm_config):
    # `scontrol requeue` is what Slurm does to a task whose node failed or that was preempted.
    job = spmd.Knot(sleepy_marker, backend="slurm", config=slurm_config,
                    infra_retries=1).map([4])
    queue = job.backend.queue
    array_id = json.loads(job.handle)["arrays"][0][0]
    wait_for(lambda: queue.states(job.handle)[0].state == RUNNING, what="the task running")
    slurm.run(["scontrol", "requeue", f"{array_id}_0"])
    wait_for(lambda: queue.states(job.handle)[0].state == PENDING, what="the task requeued")
    # Slurm holds a requeued job back for a while (BeginTime); release it now.
    slurm.run(["scontrol", "update", f"JobId={array_id}_0", "StartTime=now"])
    assert job.results(timeout=WAIT) == [4]
    status = queue.states(job.handle)[0]
    assert (status.state, status.attempts) == (SUCCEEDED, 1), status  # retries were not spent
    assert "requeued by Slurm (restart 1)" in job.logs(0)


def test_losses_past_infra_retries_are_final(slurm_config):
    job = spmd.Knot(sleepy_marker, backend="slurm", config=slurm_config,
                    infra_retries=0, retries=2).map([60])
    queue = job.backend.queue
    array_id = json.loads(job.handle)["arrays"][0][0]
    try:
        wait_for(lambda: queue.states(job.handle)[0].state == RUNNING, what="the task running")
        slurm.run(["scontrol", "requeue", f"{array_id}_0"])
        wait_for(lambda: queue.states(job.handle)[0].state == PENDING, what="the task requeued")
        slurm.run(["scontrol", "update", f"JobId={array_id}_0", "StartTime=now"])
        exc = job.futures[0].exception(timeout=WAIT)
    finally:
        job.cancel()
    assert type(exc) is spmd.TaskLost, exc
    status = queue.states(job.handle)[0]
    assert (status.state, status.lost) == (FAILED, "infrastructure"), status
    assert "lost to the infrastructure" in exc.log_tail


def sleepy_marker(seconds):
    print("sleeping", flush=True)
    time.sleep(seconds)
    return seconds


def test_errors_come_before_anything_is_submitted(slurm_config):
    with pytest.raises(spmd.ConfigError, match="shared_dir"):
        spmd.Knot(square, backend="slurm", config={"partition": "debug"})
    with pytest.raises(spmd.ConfigError, match="runtime"):
        spmd.Knot(square, backend="slurm", config={**slurm_config, "runtime": "apptainer"})
    with pytest.raises(spmd.ConfigError, match="time"):
        spmd.Knot(square, backend="slurm", config={**slurm_config, "time": "two hours"})
    before = slurm.run(["squeue", "--noheader", "--states=all", "--format=%i"]).split()
    knot = spmd.Knot(square, backend="slurm", config=slurm_config, vcpus=1, memory="20TiB")
    with pytest.raises(spmd.ResourceError, match="20"):
        knot.map([1])
    with pytest.raises(spmd.ConfigError, match="knows no partition 'nosuch'; it has debug"):
        spmd.Knot(square, backend="slurm",
                  config={**slurm_config, "partition": "nosuch"}).map([1])
    assert slurm.run(["squeue", "--noheader", "--states=all", "--format=%i"]).split() == before


def test_the_environment_follows_the_requirements(slurm_config, slurm_shared_dir):
    def six_version(_):
        import six
        return six.__version__

    knot = spmd.Knot(six_version, backend="slurm", config=slurm_config, requirements=["six==1.16.0"])
    assert knot.map([0]).results(timeout=WAIT) == ["1.16.0"]
    # Found again by its content hash: nothing is built twice; other requirements, other env.
    python, built = environment.ensure(knot.image_spec(), knot.backend.shared_dir / "envs")
    assert built is False and python.exists()
    plain = spmd.Knot(square, backend="slurm", config=slurm_config).image_spec()
    assert environment.environment_hash(plain) != environment.environment_hash(knot.image_spec())
    probe = subprocess.run([str(python), "-c", "import spmd, six; print(spmd.__file__)"],
                           capture_output=True, text=True, cwd="/")  # not this checkout's spmd
    assert probe.returncode == 0 and "spmd-runtime" in probe.stdout, probe.stderr
    with pytest.raises(spmd.RequirementError, match="no-such-package-spmd"):
        spmd.Knot(square, backend="slurm", config=slurm_config,
                  requirements=["no-such-package-spmd==0.0.1"]).map([1])


@pytest.mark.docker
def test_docker_runtime_keeps_the_container_inside_the_memory_limit(slurm_config):
    config = {**slurm_config, "runtime": "docker"}
    knot = spmd.Knot(hog, backend="slurm", config=config, memory="128MiB")
    assert type(knot.backend).uses_images
    job = knot.map([600, 1], chunksize=1)
    exc = job.futures[0].exception(timeout=WAIT)
    # dockerd's container is outside the job's cgroup: only docker run --memory stops it
    assert isinstance(exc, spmd.TaskOutOfMemory), exc
    assert "allocating 600 MB" in exc.log_tail
    assert job.futures[1].result(timeout=WAIT) == 2**20
    text = job.backend.store.get(f"{layout.prefix(job.id)}slurm/array-000000.sh").decode()
    assert f"--memory={128 * 2**20}" in text and "docker run" in text


# squeue's own output, as Slurm 22.05 prints it for --array --Format=SQUEUE_FIELDS (the first
# line was printed by the test cluster; the others have the states a single node cannot make).
SQUEUE = """\
7000000_0        COMPLETED     None                 0      0
7000000_2        FAILED        NonZeroExitCode      768    0
7000000_1        OUT_OF_MEMORY OutOfMemory          0      0
7000000_3        TIMEOUT       TimeLimit            15     0
7000000_4        NODE_FAIL     NodeDown             0      2
7000000_5        PREEMPTED     None                 0      0
7000000_6        CANCELLED     None                 15     0
7000000_7        PENDING       Resources            0      0
7000000_[8-9]    PENDING       Priority             0      0
"""


def test_squeue_states_map_to_task_statuses():
    seen = slurm.parse_squeue(SQUEUE)
    assert ("7000000", 8) not in seen and len(seen) == 8  # folded pending lines are skipped
    assert seen[("7000000", 2)].exit_code == 3 and seen[("7000000", 3)].exit_code == -15
    started = {"started": 1, "ends": {}, "timeout": False, "infra": 0}

    def status(i, marks=started):
        return task_status(seen[("7000000", i)], marks, "7000000", i)

    assert status(0, {**started, "ends": {1: 0}}).state == SUCCEEDED
    assert (status(2, {**started, "ends": {1: 3}}).lost, status(2, {**started, "ends": {1: 3}}).exit_code) == ("error", 3)
    assert status(1).lost == "oom" and status(1).state == FAILED
    assert status(3).lost == "timeout"
    assert status(4).lost == "infrastructure" and status(5).lost == "infrastructure"
    assert status(6).state == CANCELLED
    assert status(7, None).state == PENDING and status(7, None).attempts == 0
    # An attempt that succeeded after an earlier one ran out of memory is a success,
    # although Slurm reports the whole allocation OUT_OF_MEMORY.
    assert status(1, {"started": 2, "ends": {1: 137, 2: 0}, "timeout": False, "infra": 0}).state == SUCCEEDED
    # The script's own timeout mark wins over the exit code.
    assert status(2, {**started, "timeout": True}).lost == "timeout"
    # Forgotten by Slurm (past MinJobAge) without an exit status: lost, not pending forever.
    assert task_status(None, started, "7000000", 9).lost == "infrastructure"


# sacct's output where the cluster keeps accounting (this test cluster does not), for tasks
# squeue has forgotten: --parsable2 --allocations --format=JobID,State,ExitCode. sacct(1):
# JobID "ArrayJobID_ArrayTaskID"; ExitCode "the exit code ... Following the colon is the
# signal"; an array's own record of tasks not split from it names them with Slurm's task
# expression, as squeue does (the test cluster printed `8200000_[0-3%1]`, `8200001_[0,2-3]`),
# cut at SLURM_BITSTR_LEN bytes (spmd sets 0: no limit).
SACCT = """\
7000000_0|COMPLETED|0:0
7000000_1|OUT_OF_MEMORY|0:125
7000000_2|FAILED|3:0
7000000_3|CANCELLED by 1000|0:15
7000000_4|NODE_FAIL|0:0
7000000_[5-6]|PENDING|0:0
7000001_[0,2-3%2]|CANCELLED by 1000|0:0
7000002_[0-3,5...|CANCELLED by 1000|0:0
7000000_0.batch|COMPLETED|0:0
"""


def test_sacct_states_map_to_task_statuses():
    seen = slurm.parse_sacct(SACCT)
    assert sorted(i for a, i in seen if a == "7000000") == [0, 1, 2, 3, 4, 5, 6]
    assert sorted(i for a, i in seen if a == "7000001") == [0, 2, 3]  # cancelled while pending
    assert not [a for a, _ in seen if a == "7000002"]  # an expression cut short: not guessed
    assert seen[("7000000", 5)].state == "PENDING" and seen[("7000001", 2)].state == "CANCELLED"
    assert seen[("7000000", 2)].exit_code == 3 and seen[("7000000", 3)].state == "CANCELLED"
    started = {"started": 1, "ends": {}, "timeout": False, "infra": 0}
    assert task_status(seen[("7000000", 1)], started, "7000000", 1).lost == "oom"
    assert task_status(seen[("7000000", 3)], started, "7000000", 3).state == CANCELLED
    assert task_status(seen[("7000000", 4)], started, "7000000", 4).lost == "infrastructure"
    assert task_status(seen[("7000000", 0)], {**started, "ends": {1: 0}}, "7000000", 0).state == SUCCEEDED
