"""A scheduler treated gently: polling backs off while nothing changes, one squeue per poll for
every job of the client, submits within the cluster's limits, and the commands a 10,000-item
map costs per phase (docs/slurm.md states the budget)."""
from __future__ import annotations

import collections
import json
import time

import pytest

import spmd
from spmd.batch_queue import RUNNING, ArraySpec, Resources
from spmd.testing.fixtures import WAIT
from spmd.testing.functions import square
from spmd_slurm import poller, slurm
from spmd_slurm.poller import Poller
from spmd_slurm.queue import slurm_key


def test_polling_backs_off_while_nothing_changes_and_comes_back_when_something_does():
    clock, answer, asked = [0.0], {("7", 0): "RUNNING"}, []

    def ask(ids):
        asked.append(clock[0])
        return dict(answer)

    poll = Poller(1.0, ask, clock=lambda: clock[0])
    for second in range(600):  # a client polling every second for ten minutes
        clock[0] = float(second)
        assert poll.tasks(["7"]) == answer
    gaps = [b - a for a, b in zip(asked, asked[1:])]
    assert gaps == sorted(gaps) and max(gaps) == 30 and len(asked) < 40, gaps  # not 600
    answer[("7", 0)] = "COMPLETED"  # a change is seen at the next due ask...
    for second in range(600, 700):
        clock[0] = float(second)
        poll.tasks(["7"])
    after = [t for t in asked if t >= 600]
    assert after[1] - after[0] == 1  # ...after which it polls at the poll interval again
    for moment, more in ((800.0, 1), (800.5, 0), (801.0, 1)):  # a change the caller saw (a
        calls, clock[0] = len(asked), moment                     # mark): due a poll interval
        poll.tasks(["7"], fresh=True)                            # after the last ask, not sooner
        assert len(asked) == calls + more, moment


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def test_one_squeue_per_poll_whatever_the_number_of_jobs_and_tasks(slurm_config, monkeypatch):
    knots = [spmd.Knot(sleepy, backend="slurm", config=slurm_config) for _ in range(2)]
    jobs = [knot.map([0.2] * 5, chunksize=1) for knot in knots]  # 2 jobs, 4 arrays, 10 tasks
    assert sum(len(json.loads(job.handle)["arrays"]) for job in jobs) == 4
    calls = []
    real_run = slurm.run
    monkeypatch.setattr(slurm, "run", lambda argv, **kw: calls.append(argv[0]) or real_run(argv, **kw))
    per_poll = []
    while True:  # what the client's watchers do: each job's states once per poll
        before = len(calls)
        states = [job.backend.queue.states(job.handle) for job in jobs]
        per_poll.append(calls[before:])
        if all(s.state not in ("PENDING", RUNNING) for st in states for s in st.values()):
            break
        assert len(per_poll) < WAIT / 0.25, "the jobs did not end"
        time.sleep(0.25)
    assert all(c in ([], ["squeue"]) for c in per_poll), per_poll
    assert [job.results(timeout=WAIT) for job in jobs] == [[0.2] * 5] * 2


def fake_slurm(max_array_size=1001, max_job_count=10000):
    """Slurm's commands answered as a cluster would for the call count below (the test cluster
    cannot hold 10,000 tasks); every call recorded by its command's name."""
    calls = collections.Counter()
    submitted = []

    def run(argv, stdin=None, timeout=60, env=None):
        calls[argv[0]] += 1
        if argv[:3] == ["scontrol", "show", "config"]:
            return (f"MaxArraySize = {max_array_size}\nMaxJobCount = {max_job_count}\n"
                    "AccountingStorageType = accounting_storage/none\n")
        if argv[0] == "sinfo":
            return "node1 64 256000 debug* 2-00:00:00\nnode1 64 256000 long infinite\n"
        if argv[0] == "sbatch":
            n = int(stdin.split("--array=0-")[1].split()[0]) + 1
            submitted.append((str(8000000 + len(submitted)), n))
            return submitted[-1][0] + "\n"
        if argv[0] == "squeue":
            return "".join(f"{a}_{i} RUNNING None 0 0\n" for a, n in submitted for i in range(n))
        return ""
    return calls, run


def test_the_commands_a_10000_item_map_costs_per_phase(tmp_path, monkeypatch):
    calls, run = fake_slurm()
    monkeypatch.setattr(slurm, "run", run)
    monkeypatch.setattr(slurm.shutil, "which", lambda name: "/usr/bin/" + name)
    clock = [0.0]
    monkeypatch.setattr(poller, "now", lambda: clock[0])
    monkeypatch.setattr(poller, "_SHARED", {})
    backend = spmd.Knot(square, backend="slurm", config={
        "shared_dir": str(tmp_path / "shared"), "partition": "debug"}).backend
    phases = {}
    # submit: one task per item, the worst case (map's own chunking makes far fewer tasks)
    backend.capacity()
    spec = ArraySpec("big", "", ("python3", "-m", "spmd.task.worker"), 10_000, Resources())
    handle = backend.queue.submit(spec)
    phases["submit"], calls = dict(calls), calls.clear() or calls
    # an hour of watching, polled every second, while every task runs: the first minute through
    # the queue's states (42 ms each for 10,000 tasks), the rest through its poller, which
    # alone decides when squeue is asked
    for second in range(60):
        clock[0] = float(second)
        states = backend.queue.states(handle)
    assert len(states) == 10_000 and states[9_999].state == RUNNING
    ids = [a for a, _, _ in json.loads(handle)["arrays"]]
    for second in range(60, 3600):
        clock[0] = float(second)
        poller.shared(backend.queue.poll_interval, slurm.queue).tasks(ids)
    phases["watch, 1 h"], calls = dict(calls), calls.clear() or calls
    backend.queue.cancel_pending(handle)  # the failure budget is spent
    phases["budget spent"], calls = dict(calls), calls.clear() or calls
    backend.queue.cancel(handle)
    phases["cancel"] = dict(calls)
    print(phases)
    assert phases["submit"] == {"sinfo": 1, "scontrol": 1, "sbatch": 10}
    assert set(phases["watch, 1 h"]) == {"squeue"} and phases["watch, 1 h"]["squeue"] <= 130
    assert phases["budget spent"] == {"scancel": 1}
    assert phases["cancel"] == {"scancel": 1}


def test_a_spent_budget_cancels_only_pending_tasks_with_one_scancel(tmp_path, monkeypatch):
    asked = []
    # squeue after `scancel --state=PENDING` of an array whose tasks 0 and 1 ran under %2, as
    # the test cluster printed it: the array's own record of its pending tasks, no index
    answer = ["8000000_0 RUNNING None 0 0\n8000000_1 RUNNING None 0 0\n"
              "8000000_2 PENDING JobArrayTaskLimit 0 0\n8000000_3 PENDING JobArrayTaskLimit 0 0\n"
              "8000001_0 PENDING Dependency 0 0\n"]

    def run(argv, stdin=None, timeout=60, env=None):
        asked.append(argv)
        if argv[0] == "scancel":
            answer[0] = ("8000000_0 RUNNING None 0 0\n8000000_1 RUNNING None 0 0\n"
                         "8000000 CANCELLED JobArrayTaskLimit 0 0\n"
                         "8000001_0 CANCELLED Dependency 0 0\n")
        return answer[0] if argv[0] == "squeue" else ""
    monkeypatch.setattr(slurm, "run", run)
    monkeypatch.setattr(poller, "_SHARED", {})
    clock = [0.0]
    monkeypatch.setattr(poller, "now", lambda: clock[0])
    queue = spmd.Knot(square, backend="slurm", config={
        "shared_dir": str(tmp_path / "shared")}).backend.queue
    handle = json.dumps({"job": "j", "arrays": [["8000000", 0, 4], ["8000001", 4, 1]]})
    assert [s.state for s in queue.states(handle).values()] == [RUNNING] * 2 + ["PENDING"] * 3
    queue.cancel_pending(handle)
    assert asked[-1] == ["scancel", "--state=PENDING", "8000000", "8000001"]
    clock[0] += 1  # the next poll
    states = queue.states(handle)
    assert [s.state for s in states.values()] == [RUNNING] * 2 + ["CANCELLED"] * 3
    assert states[2].lost == "cancelled"  # not "infrastructure": Slurm has not forgotten them
    assert [a[0] for a in asked] == ["squeue", "scancel", "squeue"]


def test_a_map_over_the_clusters_job_limit_is_refused_before_any_sbatch(tmp_path, monkeypatch):
    calls, run = fake_slurm(max_job_count=500)
    monkeypatch.setattr(slurm, "run", run)
    monkeypatch.setattr(slurm.shutil, "which", lambda name: "/usr/bin/" + name)
    backend = spmd.Knot(square, backend="slurm", config={
        "shared_dir": str(tmp_path / "shared")}).backend
    spec = ArraySpec("big", "", ("python3", "-m", "spmd.task.worker"), 600, Resources())
    with pytest.raises(spmd.ResourceError, match="MaxJobCount=500.*chunksize"):
        backend.queue.submit(spec)
    assert calls["sbatch"] == 0


def test_a_partition_slurm_does_not_know_and_a_time_above_its_maximum_fail_at_map(
        tmp_path, monkeypatch):
    calls, run = fake_slurm()
    monkeypatch.setattr(slurm, "run", run)
    monkeypatch.setattr(slurm.shutil, "which", lambda name: "/usr/bin/" + name)
    shared = str(tmp_path / "shared")

    def knot(**config):
        return spmd.Knot(square, backend="slurm", config={"shared_dir": shared, **config})
    with pytest.raises(spmd.ConfigError, match="no partition 'gpu'; it has debug, long") as caught:
        knot(partition="gpu").backend.check_data([], None)
    assert caught.value.key == "partition"
    with pytest.raises(spmd.ResourceError, match="3000 minutes.*MaxTime of partition debug"):
        knot(time="50:00:00").backend.check_data([], None)
    knot(time="50:00:00", partition="long").backend.check_data([], None)  # no limit there
    spec = ArraySpec("j", "", ("true",), 1, Resources(timeout=3 * 86400))
    with pytest.raises(spmd.ResourceError, match="timeout=259200s"):
        knot().backend.queue.submit(spec)
    assert calls["sbatch"] == 0


@pytest.mark.parametrize("accounting", ["accounting_storage/slurmdbd", "accounting_storage/none"])
def test_tasks_squeue_forgot_come_from_sacct_where_accounting_exists_else_from_the_marks(
        tmp_path, monkeypatch, accounting):
    asked = collections.Counter()

    def run(argv, stdin=None, timeout=60, env=None):
        asked[argv[0]] += 1
        if argv[:3] == ["scontrol", "show", "config"]:
            return f"AccountingStorageType = {accounting}\n"
        if argv[0] == "squeue":  # past MinJobAge: only the running task is left
            return "8000000_3 RUNNING None 0 0\n"
        if argv[0] == "sacct":
            assert env == {"SLURM_BITSTR_LEN": "0"} and "--jobs=8000000" in argv
            return ("8000000_0|COMPLETED|0:0\n8000000_1|FAILED|3:0\n"
                    "8000000_[2]|CANCELLED by 0|0:0\n")
        return ""
    monkeypatch.setattr(slurm, "run", run)
    monkeypatch.setattr(poller, "_SHARED", {})
    queue = spmd.Knot(square, backend="slurm", config={
        "shared_dir": str(tmp_path / "shared")}).backend.queue
    marks = queue.store.path(slurm_key("j", "marks"))  # the scripts' marks, as they leave them
    marks.mkdir(parents=True)
    for name in ("0.start.1", "0.end.1.0", "1.start.1", "1.end.1.3", "3.start.1"):
        (marks / name).touch()
    states = queue.states(json.dumps({"job": "j", "arrays": [["8000000", 0, 4]]}))
    assert states[0].state == "SUCCEEDED" and states[3].state == RUNNING  # marks, squeue
    if accounting.endswith("none"):  # the test cluster: no sacct; what left no mark is lost
        assert asked["sacct"] == 0
        assert states[1].lost == "error" and states[1].exit_code == 3
        assert states[2].lost == "infrastructure" and "no longer knows" in states[2].reason
    else:  # one sacct for the tasks squeue no longer lists
        assert asked["sacct"] == 1 and asked["squeue"] == 1
        assert states[1].lost == "error" and states[1].exit_code == 3
        assert states[2].state == "CANCELLED"
