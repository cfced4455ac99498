"""Work that survives being told to stop, the same on every backend.

    CheckpointContract   spmd.checkpoint_dir() in a task is an empty folder on the task's own
                         disk (not in the store); a task stopped from outside as its
                         infrastructure stops it (``spmd_stop_task``: local ``docker stop``,
                         Slurm's warning signal, the process backend's SIGTERM) saves that
                         folder, runs again with it restored, and finishes with the right
                         result; the requeue does not spend ``retries`` (0 here) and the report
                         gives it as the attempt's reason, with the checkpoint's size

``spmd_stops_tasks`` (a class attribute, True by default) says whether the backend's test can
stop a running task from outside through the ``spmd_stop_task`` fixture. A backend whose
tasks are told to stop only by an infrastructure the test cannot drive (AWS under moto: a
spot interruption) sets it to False; the stop test then checks what still holds there: the
same task, never stopped, finishes in one attempt from an empty folder.
"""
from __future__ import annotations

import os

import spmd
from spmd import layout

from . import functions as fn
from .fixtures import WAIT, BackendFixtures, wait_for

STEPS = 40  # steps of 0.2 s: the task runs for 8 s unless stopped


class CheckpointContract(BackendFixtures):
    """spmd.checkpoint_dir() and stop-and-requeue on the backend under test."""

    #: the backend's test can stop a running task from outside (the spmd_stop_task fixture)
    spmd_stops_tasks = True

    def test_checkpoint_dir_is_an_empty_folder_on_the_tasks_own_disk(self, spmd_knot, spmd_store):
        job = spmd_knot(fn.count_with_checkpoint).map([spmd.Args(0, 0.0)], chunksize=1)
        count, starts, folder = job.results(timeout=WAIT)[0]
        assert (count, starts) == (0, [0])
        assert os.path.isabs(folder) and "checkpoint" in os.path.basename(folder), folder
        root = getattr(spmd_store, "root", None)
        if root is not None:  # a directory store: the folder is not inside it
            assert not os.path.realpath(folder).startswith(os.path.realpath(str(root))), folder
        assert not list(spmd_store.list(f"{layout.prefix(job.id)}checkpoints/")), \
            "a task that was never told to stop saved a checkpoint"

    def test_checkpoint_a_stopped_task_resumes_from_its_checkpoint(
            self, spmd_knot, spmd_store, spmd_stop_task):
        job = spmd_knot(fn.count_with_checkpoint, retries=0).map([spmd.Args(STEPS, 0.2)], chunksize=1)
        if not self.spmd_stops_tasks:
            assert job.results(timeout=WAIT)[0][:2] == (STEPS, [0])
            assert job.report()[0].attempts == 1
            return
        progress = f"{layout.prefix(job.id)}progress/0-a1"
        wait_for(lambda: spmd_store.exists(progress) and int(spmd_store.get(progress)) >= 3,
                 what="the task's first attempt to count to 3")
        spmd_stop_task(job, 0)
        count, starts, _ = job.results(timeout=WAIT)[0]
        assert count == STEPS
        assert len(starts) >= 2 and starts[0] == 0 and starts[1] >= 3, \
            f"the second attempt did not start from the first one's checkpoint: {starts}"
        job.wait(timeout=WAIT)
        row = job.report()[0]
        assert row.attempts == len(starts), row
        assert row.reasons[0].startswith("requeued (") and " saved" in row.reasons[0], row.reasons
        assert "checkpoint" in row.reasons[0] and row.reasons[-1] == "succeeded", row.reasons
        assert job.status()["SUCCEEDED"] == 1
        assert not list(spmd_store.list(f"{layout.prefix(job.id)}checkpoints/")), \
            "the checkpoint of a task that succeeded was kept"
