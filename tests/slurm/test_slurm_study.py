"""Issue 19 on Slurm beyond the kit: the #SBATCH lines the cap, chains and GPUs render, a GPU
task given one of the test cluster's two stand-in GPUs by Slurm's gres plugin (and three
refused at map()), and a chained item whose upstream task was lost (Slurm cancels it for its
never-met aftercorr) failing alone with UpstreamFailed."""
from __future__ import annotations

import json
import subprocess

import pytest

import spmd
from spmd.batch_queue import ArraySpec, Resources
from spmd.protocol import SECRETS_DIR
from spmd.testing.fixtures import WAIT
from spmd.testing.functions import environment, sleepy, square
from spmd_slurm import depend, runtimes, script, slurm

UPSTREAM = json.dumps({"job": "up", "arrays": [["700", 0, 4], ["701", 4, 4], ["702", 8, 1]]})


def spec(**fields) -> ArraySpec:
    fields = {"n_tasks": 9, "resources": Resources(memory=2**28), **fields}
    return ArraySpec(job_id="down", image="", command=("python3", "-m", "spmd.task.worker"), **fields)


def rendered(s: ArraySpec, ended: frozenset = frozenset()) -> list[list[str]]:
    """Each array's #SBATCH lines, split at four tasks as the test cluster splits them."""
    out, before = [], None
    for number, offset in enumerate(range(0, s.n_tasks, 4)):
        n = min(4, s.n_tasks - offset)
        after = depend.for_array(s, offset, n, depend.upstream_arrays(s), set(ended), before)
        out.append(script.sbatch_lines(s, n, script.Options(), "/o/%A_%a.out", after))
        before = f"80{number}"  # the id sbatch gave the array before
    return out


def test_the_cap_chains_and_gpus_in_the_sbatch_lines():
    # max_parallel: every array %N, each after the one before, so never more than N at once
    capped = rendered(spec(max_parallel=2, resources=Resources(memory=2**28, gpus=2)))
    assert "#SBATCH --array=0-3%2" in capped[0] and "#SBATCH --array=0-0%2" in capped[2]
    assert not any("--dependency" in line for line in capped[0])
    assert "#SBATCH --dependency=afterany:800" in capped[1]
    assert "#SBATCH --dependency=afterany:801" in capped[2]
    assert all("#SBATCH --gres=gpu:2" in lines for lines in capped)
    # a chained map (task t after upstream task t): aftercorr on the array at the same offset
    chained = rendered(spec(after_job="up", after_handle=UPSTREAM,
                            after_tasks=tuple((t,) for t in range(9))))
    assert ["#SBATCH --dependency=aftercorr:700", "#SBATCH --dependency=aftercorr:701",
            "#SBATCH --dependency=aftercorr:702"] == \
        [next(line for line in lines if "--dependency" in line) for lines in chained]
    assert all("#SBATCH --kill-on-invalid-dep=yes" in lines for lines in chained)
    assert not any("--gres" in line for lines in chained for line in lines)
    # ... with a cap too; an upstream array that has ended is not named (Slurm may forget it)
    both = rendered(spec(after_job="up", after_handle=UPSTREAM, max_parallel=3,
                         after_tasks=tuple((t,) for t in range(9))), frozenset({"700"}))
    assert not any("--dependency" in line for line in both[0])
    assert "#SBATCH --dependency=aftercorr:701,afterany:800" in both[1]
    # a group step (one task reads every upstream task): the whole upstream arrays
    group = spec(after_job="up", after_handle=UPSTREAM, after_tasks=(tuple(range(9)),), n_tasks=1)
    assert "#SBATCH --dependency=afterany:700:701:702" in rendered(group)[0]


def test_secrets_are_bound_read_only_in_a_docker_task():
    folder = "/shared/store/spmd/secrets/down"
    s = spec(env={SECRETS_DIR: folder})
    line = runtimes.Docker().launch(s, ["/shared/store/spmd/jobs/down", folder], ["python3"])
    assert f"--volume {folder}:{folder}:ro" in line
    assert "--volume /shared/store/spmd/jobs/down:/shared/store/spmd/jobs/down " in line


def test_a_gpu_task_sees_the_gpu_slurm_gave_it_and_more_than_a_node_has_are_refused(slurm_config):
    assert [slurm.gres_gpus(g) for g in ("(null)", "gpu:2", "gpu:a100:4(S:0-1)",
                                         "gpu:1,mps:100", "mps:100")] == [0, 2, 4, 1, 0]
    knot = spmd.Knot(environment, backend="slurm", config=slurm_config, gpus=1, memory="256MiB")
    # scripts/slurm.sh: gres gpu:2, stand-in device files for GPUs 0 and 1
    assert knot.backend.capacity().gpus == 2
    job = knot.map(["CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE"], chunksize=3)
    visible, given, count = job.results(timeout=WAIT)  # what one task's gres plugin set
    assert visible in ("0", "1") and given in ("0", "1") and count == "1", (visible, given, count)
    array = json.loads(job.handle)["arrays"][0][0]
    record = subprocess.run(["scontrol", "show", "job", array], capture_output=True, text=True,
                            check=True).stdout
    assert "TresPerNode=gres:gpu:1" in record, record
    with pytest.raises(spmd.ResourceError, match="asks for 3 GPUs.*slurm backend has 2"):
        spmd.Knot(square, backend="slurm", config=slurm_config, gpus=3).map([1])


def test_a_chained_item_whose_upstream_task_was_lost_fails_alone(slurm_config):
    first = spmd.Knot(sleepy, backend="slurm", config=slurm_config, timeout=2,
                      memory="256MiB").map([0.2, 60, 0.2], chunksize=1)
    second = spmd.Knot(square, backend="slurm", config=slurm_config, memory="256MiB").map(first)
    # Slurm cancels downstream task 1 (its aftercorr can never be met: upstream task 1 timed
    # out); the client names the upstream item; the others go on
    error = second.futures[1].exception(timeout=WAIT)
    assert isinstance(error, spmd.UpstreamFailed), error
    assert error.job_id == first.id and error.item == 1
    assert [second.futures[i].result(timeout=WAIT) for i in (0, 2)] == \
        [pytest.approx(0.04), pytest.approx(0.04)]
    reasons = {t.reason for t in slurm.queue([a for a, _, _ in
                                              json.loads(second.handle)["arrays"]]).values()}
    assert "DependencyNeverSatisfied" in reasons
