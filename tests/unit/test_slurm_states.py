"""Slurm's answers read without a cluster: a controller that forgot the job, held tasks.

The shapes are Slurm's own: ``squeue --jobs=ID`` on a job the controller does not know exits 1
with "slurm_load_jobs error: Invalid job id specified" (squeue(1); seen here after slurmctld was
killed with SIGKILL and restarted before it saved the job), and a task relaunched after launch
failures on a broken node waits with the reason "launch failed requeued held"."""
import pytest

from spmd.batch_queue import FAILED, PENDING, SUCCEEDED
from spmd_slurm import slurm
from spmd_slurm.queue import task_status


def test_a_forgotten_job_is_an_empty_answer_not_a_passing_error(monkeypatch):
    def forgotten(argv, **kwargs):
        raise slurm.SlurmError("squeue --noheader failed (exit 1): slurm_load_jobs error: "
                               "Invalid job id specified")
    monkeypatch.setattr(slurm, "run", forgotten)
    assert slurm.queue(["7001"]) == {}

    def down(argv, **kwargs):
        raise slurm.SlurmError("squeue --noheader failed (exit 1): Unable to contact slurm controller")
    monkeypatch.setattr(slurm, "run", down)
    with pytest.raises(slurm.SlurmError, match="Unable to contact"):  # that one may pass
        slurm.queue(["7001"])


def test_tasks_slurm_forgot_end_by_what_they_recorded():
    finished = {"started": 1, "ends": {1: 0}, "timeout": False, "infra": 0}
    assert task_status(None, finished, "7001", 0).state == SUCCEEDED
    running = {"started": 1, "ends": {}, "timeout": False, "infra": 0}
    lost = task_status(None, running, "7001", 1)
    assert lost.state == FAILED and lost.lost == "infrastructure"
    assert "the scheduler no longer knows this job" in lost.reason and "7001_1" in lost.reason


def test_held_tasks_carry_slurms_reason():
    held = slurm.ArrayTask("7001", 2, "PENDING", "launch failed requeued held", None, 1)
    status = task_status(held, None, "7001", 2)
    assert status.state == FAILED and "launch failed requeued held" in status.reason
    assert "sinfo -R" in status.reason
    by_user = slurm.ArrayTask("7001", 3, "PENDING", "JobHeldUser", None, 0)
    status = task_status(by_user, None, "7001", 3)
    assert status.state == PENDING and status.reason == "Slurm holds it: JobHeldUser"
    waiting = slurm.ArrayTask("7001", 4, "PENDING", "Resources", None, 0)
    assert task_status(waiting, None, "7001", 4).reason == ""


def test_a_task_requeued_at_its_time_limit_says_so_while_it_waits():
    marks = {"started": 2, "ends": {}, "timeout": False, "infra": 0, "requeued": {1, 2}}
    waiting = slurm.ArrayTask("7001", 0, "PENDING", "BeginTime", None, 2)
    status = task_status(waiting, marks, "7001", 0)
    assert (status.state, status.attempts, status.lost) == (PENDING, 2, "requeue")
    assert status.reason == "requeued (walltime warning)"
