"""No subject data left behind on local: a warm container's next task finds nothing of the
inputs or outputs of the tasks before it, however they ended (os._exit, SIGKILL)."""
import pytest

import spmd

pytestmark = pytest.mark.docker


def visit(path, how):
    """Stage the input, write an output file, then end as asked; 'look' lists what earlier
    tasks left in /tmp (this task's own folder aside)."""
    import glob
    import os
    import signal
    mine = os.environ["SPMD_STAGE_DIR"]
    (spmd.outputs() / "derived.txt").write_text(open(path).read())
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "look":
        return sorted(p for p in glob.glob("/tmp/spmd-*") if p != mine)
    return os.path.basename(path)


def test_a_warm_containers_next_task_finds_nothing_of_the_earlier_ones(tmp_path, store_dir, engine):
    subject = tmp_path / "sub-01.txt"
    subject.write_text("private subject data")
    config = {"store_dir": store_dir, "max_vcpus": 1}  # one warm container serves every task
    job = spmd.Knot(visit, vcpus=1, retries=0, config=config).map(
        [(spmd.File(subject), "kill"), (spmd.File(subject), "ok"), (spmd.File(subject), "look")],
        chunksize=1, starmap=True)
    killed, ok, look = list(job)
    with pytest.raises(spmd.TaskLost):
        killed.result(timeout=300)
    assert ok.result(timeout=300) == "sub-01.txt"
    assert look.result(timeout=300) == []
    assert job.provenance(1)["host"] == job.provenance(2)["host"], "not one warm container"
