"""The scheduler core's policy with a scripted Runner: no Docker, no processes."""
import json
import time

from spmd.batch_queue import CANCELLED, FAILED, SUCCEEDED
from spmd.scheduling import Adoption, DirectoryStore, Outcome, Runner, Scheduler, queue_key

ENDINGS = {"ok": Outcome(0, "fine\n"), "error": Outcome(1, "boom\n"),
           "oom": Outcome(-9, "", oom=True),
           "lost": Outcome(None, "", lost="infrastructure", reason="the engine restarted")}


class ScriptedRunner(Runner):
    """Each attempt of a task ends as the next word of its plan; "hang" ends only when killed."""

    def __init__(self, plans):
        self.plans = {task: list(words) for task, words in plans.items()}
        self.running = {}
        self.killed = []
        self.attempts = []
        self.infra_lost_seen = []
        self.memory_seen = []

    def start(self, attempts):
        for a in attempts:
            task, attempt = a.task, a.number
            assert a.env["SPMD_ATTEMPT"] == str(attempt)
            assert int(a.env["SPMD_MEMORY"]) == a.memory
            self.attempts.append((task, attempt))
            self.infra_lost_seen.append((task, attempt, a.env["SPMD_INFRA_LOST"]))
            self.memory_seen.append((task, attempt, a.memory))
            self.running[task] = (self.plans[task].pop(0), time.monotonic())
        return {}

    def poll(self, timeout):
        time.sleep(0.005)
        ended = {}
        for task, (word, _) in list(self.running.items()):
            if word == "killed" or word != "hang":
                del self.running[task]
                ended[task] = Outcome(-9) if word == "killed" else ENDINGS[word]
        return ended

    def started_at(self, task):
        return self.running[task][1] if task in self.running else None

    def kill(self, task):
        self.killed.append(task)
        self.running[task] = ("killed", self.running[task][1])

    def used_by_others(self):
        return 0.0, 0


def run(tmp_path, plans, capacity=2**30, **resources):
    store = DirectoryStore(tmp_path)
    res = {"vcpus": 1.0, "memory": 2**30, "timeout": None, "retries": 0, "infra_retries": 3,
           **resources}
    config = {"spec": {"job_id": "job-1", "command": [], "n_tasks": len(plans), "resources": res,
                       "env": {}, "image": ""},
              "capacity": {"vcpus": 1.0, "memory": capacity}}
    runner = ScriptedRunner(plans)
    scheduler = Scheduler(store, "job-1", config, runner)
    scheduler.run()
    state = store.get_json(queue_key("job-1", "state.json"))
    return scheduler, runner, state


def test_user_errors_and_infrastructure_losses_have_separate_budgets(tmp_path):
    scheduler, runner, state = run(tmp_path, {0: ["lost", "error", "ok"], 1: ["lost", "lost"],
                                              2: ["oom", "error"]}, retries=1, infra_retries=1)
    tasks = scheduler.tasks
    assert (tasks[0].state, tasks[0].attempts) == (SUCCEEDED, 3)  # one of each budget
    assert (tasks[1].state, tasks[1].attempts, tasks[1].lost) == (FAILED, 2, "infrastructure")
    assert tasks[1].reason == "the engine restarted"
    assert (tasks[2].state, tasks[2].attempts, tasks[2].lost) == (FAILED, 2, "error")
    assert state["done"] and state["infra_lost"] == {"0": 1, "1": 1}
    log = DirectoryStore(tmp_path).get("jobs/job-1/logs/000000.log").decode()
    assert "--- spmd: attempt 2 ---" in log and "the engine restarted" in log and "fine" in log


def test_each_attempt_learns_how_many_earlier_ones_infrastructure_lost(tmp_path):
    # The worker leaves those out when it decides whether its output is the final one.
    _, runner, _ = run(tmp_path, {0: ["lost", "error", "ok"]}, retries=1, infra_retries=1)
    assert runner.infra_lost_seen == [(0, 1, "0"), (0, 2, "1"), (0, 3, "1")]


def test_a_timeout_is_killed_and_never_retried(tmp_path):
    scheduler, runner, _ = run(tmp_path, {0: ["hang", "ok"]}, timeout=0.2, retries=2)
    assert runner.killed == [0]
    assert (scheduler.tasks[0].state, scheduler.tasks[0].lost, scheduler.tasks[0].attempts) == \
        (FAILED, "timeout", 1)


def test_cancel_kills_running_and_drops_pending(tmp_path, monkeypatch):
    store = DirectoryStore(tmp_path)
    poll = ScriptedRunner.poll

    def poll_then_cancel(self, timeout):  # the client cancels while task 0 runs
        if 0 in self.running:
            store.put(queue_key("job-1", "cancel"), b"cancelled\n")
        return poll(self, timeout)

    monkeypatch.setattr(ScriptedRunner, "poll", poll_then_cancel)
    scheduler, runner, state = run(tmp_path, {0: ["hang"], 1: ["ok"]})  # room for one at a time
    assert runner.killed == [0] and runner.attempts == [(0, 1)]
    assert [(s.state, s.attempts) for s in scheduler.tasks.values()] == [(CANCELLED, 1), (CANCELLED, 0)]
    assert state["done"]


def test_a_cancelled_jobs_last_states_are_written_after_the_runner_closed(tmp_path, monkeypatch):
    # The client's wait returns once every task has ended: by then the runner has released
    # what it held (the local runner: the job's containers are removed).
    store = DirectoryStore(tmp_path)
    events = []
    poll, put = ScriptedRunner.poll, DirectoryStore.put

    def poll_then_cancel(self, timeout):
        if 0 in self.running:
            store.put(queue_key("job-1", "cancel"), b"cancelled\n")
        return poll(self, timeout)

    def recording_put(self, key, data):
        if key.endswith("state.json"):
            tasks = json.loads(data)["tasks"].values()
            events.append("all ended" if all(t["state"] == CANCELLED for t in tasks) else "state")
        put(self, key, data)

    monkeypatch.setattr(ScriptedRunner, "poll", poll_then_cancel)
    monkeypatch.setattr(ScriptedRunner, "close", lambda self: events.append("close"), raising=False)
    monkeypatch.setattr(DirectoryStore, "put", recording_put)
    run(tmp_path, {0: ["hang"], 1: ["ok"]})
    assert "close" in events and "all ended" in events
    assert events.index("close") < events.index("all ended"), events


MiB = 2**20


def test_out_of_memory_runs_again_at_the_next_size_and_retries_count_afresh(tmp_path):
    scheduler, runner, state = run(tmp_path, {0: ["oom", "oom", "error", "ok"], 1: ["ok"]},
                                   capacity=2**30, memory=256 * MiB,
                                   more_memory=[512 * MiB, 1024 * MiB], retries=1)
    assert [m for m in runner.memory_seen if m[0] == 0] == \
        [(0, 1, 256 * MiB), (0, 2, 512 * MiB), (0, 3, 1024 * MiB), (0, 4, 1024 * MiB)]
    assert [m for m in runner.memory_seen if m[0] == 1] == [(1, 1, 256 * MiB)]
    # attempts at smaller sizes do not count against retries, in the worker's final flag too
    assert [n for t, _, n in runner.infra_lost_seen if t == 0] == ["0", "1", "2", "2"]
    assert [(s.state, s.attempts) for s in scheduler.tasks.values()] == [(SUCCEEDED, 4),
                                                                         (SUCCEEDED, 1)]
    assert state["memory_step"] == {"0": 2}


def test_out_of_memory_at_the_largest_size_follows_retries(tmp_path):
    scheduler, runner, _ = run(tmp_path, {0: ["oom", "oom"]}, memory=256 * MiB,
                               more_memory=[512 * MiB])
    assert (scheduler.tasks[0].state, scheduler.tasks[0].attempts, scheduler.tasks[0].lost) == \
        (FAILED, 2, "oom")
    assert "512.0MiB" in scheduler.tasks[0].reason


def test_a_resumed_scheduler_gives_adopted_attempts_the_environment_start_gave(tmp_path):
    """A scheduler that replaces a dead one hands the runner each running attempt's full
    environment: its infrastructure losses and memory size, not only its index."""
    store = DirectoryStore(tmp_path)
    res = {"vcpus": 1.0, "memory": 256 * MiB, "timeout": None, "retries": 0, "infra_retries": 3,
           "more_memory": [1024 * MiB]}
    config = {"spec": {"job_id": "job-1", "command": [], "n_tasks": 1, "resources": res,
                       "env": {"USER_VAR": "x"}, "image": "img"},
              "capacity": {"vcpus": 1.0, "memory": 2**31}}
    seen = {}

    class Adopting(ScriptedRunner):
        def adopt(self, running, maybe=()):
            seen.update({a.task: a.env for a in running})
            return Adoption({a.task: ENDINGS["ok"] for a in running}, set())

    scheduler = Scheduler(store, "job-1", config, Adopting({0: []}))
    # what the dead scheduler left: attempt 3 running at the second size, one loss before
    scheduler.resume({"tasks": {"0": {"state": "RUNNING", "attempts": 3, "exit_code": None,
                                      "reason": ""}},
                      "infra_lost": {"0": 1}, "memory_step": {"0": 1}, "memory_before": {"0": 1}})
    env = seen[0]
    assert (env["SPMD_ATTEMPT"], env["SPMD_INFRA_LOST"], env["SPMD_MEMORY"], env["USER_VAR"]) == \
        ("3", "2", str(1024 * MiB), "x")
    assert scheduler.tasks[0].state == SUCCEEDED


def test_a_resumed_scheduler_takes_over_attempts_started_after_the_last_state_it_wrote(tmp_path):
    """state.json lags the dead scheduler by up to a tick: a task it calls pending may be
    running (adopted, not started again) or may have ended (its outcome taken, not rerun)."""
    store = DirectoryStore(tmp_path)
    res = {"vcpus": 1.0, "memory": 2**30, "timeout": None, "retries": 0, "infra_retries": 3}
    config = {"spec": {"job_id": "job-1", "command": [], "n_tasks": 3, "resources": res,
                       "env": {}, "image": ""},
              "capacity": {"vcpus": 1.0, "memory": 2**30}}

    class Adopting(ScriptedRunner):
        def adopt(self, running, maybe=()):
            self.offered = sorted((a.task, a.number) for a in maybe)
            self.running[1] = ("ok", time.monotonic())  # the dead scheduler started task 1
            return Adoption({2: ENDINGS["ok"]}, {1})  # and task 2 ran and ended

    runner = Adopting({0: ["ok"], 1: [], 2: []})
    scheduler = Scheduler(store, "job-1", config, runner)
    pending = {"state": "PENDING", "attempts": 0, "exit_code": None, "reason": ""}
    scheduler.resume({"tasks": {"0": pending, "1": pending, "2": pending}})
    scheduler.run()
    assert runner.offered == [(0, 1), (1, 1), (2, 1)]
    assert runner.attempts == [(0, 1)]  # only the task nobody had started
    assert {i: (t.state, t.attempts) for i, t in scheduler.tasks.items()} == \
        {0: (SUCCEEDED, 1), 1: (SUCCEEDED, 1), 2: (SUCCEEDED, 1)}


def test_a_starting_scheduler_is_not_turned_away_by_a_clients_probe_of_its_lock(tmp_path):
    """A client's scheduler_alive() holds the job's lock for an instant; a scheduler starting
    at that instant waits it out, and only a lock held for good sends it away."""
    import fcntl
    import threading

    from spmd.scheduling.core import _take

    path = tmp_path / "scheduler.lock"
    path.touch()
    probe = open(path)
    fcntl.flock(probe, fcntl.LOCK_EX)
    threading.Timer(0.3, fcntl.flock, (probe, fcntl.LOCK_UN)).start()
    with open(path, "a") as lock:
        assert _take(lock)
    holder = open(path)
    fcntl.flock(holder, fcntl.LOCK_EX)
    with open(path, "a") as lock:
        assert not _take(lock, tries=3)
