"""spmd.protocol: the environment a task reads, and resolve(), table by table."""
import pytest

from spmd import codec, protocol
from spmd.batch_queue import CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, TaskStatus
from spmd.errors import TaskLost, TaskOutOfMemory, TaskTimedOut
from spmd.protocol import Provenance, Resolution, TaskOutput

PROV = Provenance(started=1.0, ended=2.0, attempt=1, peak_memory=0, host="h", image="", python="3")


def out(final: bool, attempt: int = 1, ok: bool = True) -> TaskOutput:
    result = ("ok", codec.Pickled.of(7)) if ok else ("error", {"type": "E", "message": "m",
                                                               "traceback": "", "pickled": None})
    return TaskOutput(task=0, attempt=attempt, final=final, results=[result], provenance=PROV)


FINAL, NONFINAL = out(True), out(False, ok=False)

# (name, output, status, expected kind or None (unresolved), error class, reason)
CASES = [
    ("nothing yet", None, TaskStatus(), None, None, ""),
    ("running, no output", None, TaskStatus(RUNNING, 1), None, None, ""),
    ("final output while still running", FINAL, TaskStatus(RUNNING, 1), "output", None, ""),
    ("final output, ended", FINAL, TaskStatus(SUCCEEDED, 1, 0), "output", None, ""),
    ("failed output, retry pending", NONFINAL, TaskStatus(PENDING, 1, 1, "exit 1", "error"),
     None, None, ""),
    ("failed output, retry running", NONFINAL, TaskStatus(RUNNING, 2), None, None, ""),
    ("non-final output, task ended (retries used up by a crash)", NONFINAL,
     TaskStatus(FAILED, 2, None, "out of memory", "oom"), "output", None, ""),
    ("non-final output, cancelled during the retry", NONFINAL,
     TaskStatus(CANCELLED, 2, None, "cancelled", "cancelled"), "output", None, ""),
    ("out of memory", None, TaskStatus(FAILED, 1, 137, "out of memory (limit 1 GiB)", "oom"),
     "lost", TaskOutOfMemory, "out of memory (limit 1 GiB)"),
    ("timed out", None, TaskStatus(FAILED, 1, 137, "timed out after 2s", "timeout"),
     "lost", TaskTimedOut, "timed out after 2s"),
    ("crashed", None, TaskStatus(FAILED, 1, 139, "exited with code 139", "error"),
     "lost", TaskLost, "exited with code 139"),
    ("lost to the infrastructure", None,
     TaskStatus(FAILED, 4, None, "the Docker engine restarted", "infrastructure"),
     "lost", TaskLost, "the Docker engine restarted"),
    ("succeeded without output", None, TaskStatus(SUCCEEDED, 1, 0), "lost", TaskLost,
     "ended without output"),
    ("cancelled before it started", None, TaskStatus(CANCELLED, 0, None, "cancelled", "cancelled"),
     "cancelled", None, "cancelled"),
    ("killed by cancel while running", None, TaskStatus(FAILED, 1, 137, "cancelled", "cancelled"),
     "cancelled", None, "cancelled"),
]


@pytest.mark.parametrize("name,output,status,kind,error,reason", CASES, ids=[c[0] for c in CASES])
def test_resolve_one_task(name, output, status, kind, error, reason):
    step = protocol.resolve([0], {0: output} if output else {}, {0: status})
    if kind is None:
        assert step.resolutions == []
        assert step.running == ([0] if status.state == RUNNING else [])
        return
    assert step.running == []
    (resolution,) = step.resolutions
    assert (resolution.task, resolution.kind, resolution.error) == (0, kind, error)
    assert resolution.output is (output if kind == "output" else None)
    if kind != "output":
        assert resolution.reason == reason


def test_resolve_leaves_resolved_tasks_alone_and_handles_many():
    states = {0: TaskStatus(SUCCEEDED, 1, 0), 1: TaskStatus(RUNNING, 1),
              2: TaskStatus(FAILED, 1, 137, "oom", "oom"), 3: TaskStatus(PENDING)}
    step = protocol.resolve(range(5), {0: FINAL, 1: None}, states, resolved={0})
    assert [(r.task, r.kind) for r in step.resolutions] == [(2, "lost")]
    assert step.running == [1]


def test_lost_error_carries_reason_tail_and_exit_code():
    resolution = Resolution(3, "lost", error=TaskOutOfMemory, reason="out of memory", exit_code=137)
    error = resolution.lost_error("job-1", log_tail="allocating\nKilled")
    assert type(error) is TaskOutOfMemory
    assert (error.job_id, error.task, error.exit_code) == ("job-1", 3, 137)
    assert "out of memory" in str(error) and error.log_tail.endswith("Killed")


# (name, listed, status, read_at, expected to be read)
READS = [
    ("not listed, running", False, TaskStatus(RUNNING, 1), {}, False),
    ("listed, never read", True, TaskStatus(RUNNING, 1), {}, True),
    ("listed, non-final read at this attempt", True, TaskStatus(PENDING, 1, 1, "x", "error"),
     {0: 1}, False),
    ("listed, the queue reports another attempt", True, TaskStatus(RUNNING, 2), {0: 1}, True),
    ("ended: always read once more", True, TaskStatus(FAILED, 2, 1, "x", "error"), {0: 2}, True),
    ("ended, not listed: read (the output may be newer than the listing)", False,
     TaskStatus(SUCCEEDED, 1, 0), {}, True),
]


@pytest.mark.parametrize("name,listed,status,read_at,expected", READS, ids=[r[0] for r in READS])
def test_outputs_to_read(name, listed, status, read_at, expected):
    wanted = protocol.outputs_to_read([0], [0] if listed else [], {0: status}, read_at)
    assert wanted == ([0] if expected else [])


def test_outputs_to_read_skips_resolved():
    assert protocol.outputs_to_read([0, 1], [0, 1], {}, {}, resolved={0}) == [1]


def test_listing_starts_after_the_last_task_before_the_first_unresolved():
    assert protocol.listing_start("j", range(5), set()) == ""
    assert protocol.listing_start("j", range(5), {0, 1, 3}) == "jobs/j/output/000001.pkl"
    assert protocol.listing_start("j", range(5), set(range(5))) == ""


ENV = [
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "3"}, 3, 1),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "3", "SPMD_TASK_OFFSET": "10000", "SPMD_ATTEMPT": "2"}, 10003, 2),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "0", "AWS_BATCH_JOB_ATTEMPT": "3", "SPMD_ATTEMPT": "1"}, 0, 3),
]


@pytest.mark.parametrize("environ,index,attempt", ENV)
def test_task_index_and_attempt_from_the_environment(environ, index, attempt):
    assert protocol.task_index(environ) == index
    assert protocol.attempt_number(environ) == attempt


def test_task_environment_round_trips():
    env = protocol.task_environment({"SPMD_JOB_ID": "j", "X": "1"}, task=4, attempt=2, image="img")
    assert protocol.task_index(env) == 4 and protocol.attempt_number(env) == 2
    assert env["SPMD_IMAGE"] == "img" and env["X"] == "1"
    assert set(protocol.PER_TASK) >= {"AWS_BATCH_JOB_ARRAY_INDEX", "SPMD_ATTEMPT"}
