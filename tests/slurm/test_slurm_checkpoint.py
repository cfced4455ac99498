"""Work longer than Slurm's time limit finishes over several requeues (issue 20's test).

Slurm's limits are whole minutes, and it checks them about every 30 s, sending a warning at
the check before the one that would be late for it. So this is the shortest real set-up: a
1-minute limit, ``stop_warning = 5`` (the warning comes at the first check at least 25 s
into an attempt, the kill could come only a check, 30 s, later), and three minutes of work.
Nothing is sent from outside: Slurm's own --signal=B:USR1@5 tells each attempt to stop. The
test cluster's ``cred_expire=10`` (scripts/slurm.sh) makes a requeued task wait 11 s before
it starts again rather than Slurm's default 121 s.
"""
from __future__ import annotations

import pytest

import spmd
from spmd import layout
from spmd.testing.functions import count_with_checkpoint

LIMIT_MINUTES = 1
WORK_SECONDS = 3 * 60 * LIMIT_MINUTES


# Four minutes spent mostly waiting for Slurm's checks: on a worker (and cluster) of its own,
# beside the other Slurm tests (scripts/test.sh runs them on two workers).
@pytest.mark.xdist_group("slurm-walltime")
def test_work_three_times_the_time_limit_finishes_over_requeues(slurm_config):
    config = {**slurm_config, "time": str(LIMIT_MINUTES), "stop_warning": 5}
    knot = spmd.Knot(count_with_checkpoint, backend="slurm", config=config, retries=0,
                     infra_retries=10)
    job = knot.map([spmd.Args(WORK_SECONDS, 1.0)], chunksize=1)
    count, starts, _ = job.results(timeout=15 * 60)[0]
    assert count == WORK_SECONDS
    # each attempt took up where the one before had saved it
    assert len(starts) >= 3 and starts[0] == 0, starts
    assert all(a < b for a, b in zip(starts, starts[1:])), starts
    job.wait(timeout=120)
    row = job.report()[0]
    print(f"attempts started from {starts}: {row.why()}")
    assert row.state == "SUCCEEDED" and row.attempts == len(starts), row
    requeues, last = row.reasons[:-1], row.reasons[-1]
    assert last == "succeeded" and len(requeues) == len(starts) - 1, row.reasons
    for reason in requeues:
        assert reason.startswith("requeued (walltime warning), checkpoint ") and " saved" in reason, \
            row.reasons
    assert "requeued (walltime warning)" in job.report().text()
    assert not list(knot.backend.store.list(f"{layout.prefix(job.id)}checkpoints/"))


def test_the_warning_is_asked_only_where_slurms_limit_ends_a_task(tmp_path):
    from spmd.batch_queue import ArraySpec, Resources
    from spmd.errors import ConfigError
    from spmd_slurm import script
    from spmd_slurm.queue import SlurmQueue
    from spmd_slurm.store import DirectoryStore

    def spec(timeout=None):
        return ArraySpec(job_id="j", image="", command=("python3", "-m", "spmd.task.worker"),
                         n_tasks=1, resources=Resources(timeout=timeout))

    options = script.Options(time="10", stop_warning=90)
    assert "#SBATCH --signal=B:USR1@90" in script.sbatch_lines(spec(), 1, options, "/o")
    # a task with a timeout is ended by spmd first: no warning, no requeue
    assert not any("--signal" in line for line in script.sbatch_lines(spec(30), 1, options, "/o"))
    queue = SlurmQueue(DirectoryStore(tmp_path), script.Options(time="1", stop_warning=90))
    with pytest.raises(ConfigError, match="stop_warning = 90 s is not shorter than time = '1'"):
        queue.check_warning(spec())
    queue.check_warning(spec(30))  # its own timeout: Slurm's warning is not asked for
