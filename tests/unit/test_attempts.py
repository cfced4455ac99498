"""The attempt rule (spmd.attempts) as a table, and the engines that follow it."""
import pytest

from spmd import attempts
from spmd.attempts import Tally
from spmd.batch_queue import Resources
from spmd.errors import ResourceError

GIB = 2**30


def walk(resources: Resources, losses: list) -> list[str]:
    """The decisions after each failed attempt, in order, as an engine takes them."""
    tally, kinds = Tally(), []
    for attempt, lost in enumerate(losses, start=1):
        decision = attempts.after(resources, attempt, lost, tally)
        kinds.append(decision.kind)
        if not decision.again:
            break
        tally = decision.tally
    return kinds


TABLE = [
    # resources                                     losses, one per failed attempt   decisions
    (dict(retries=0),                               ["error"],                        ["final"]),
    (dict(retries=2),                               ["error", "error", "error"],      ["retry", "retry", "final"]),
    (dict(retries=2),                               ["timeout"],                      ["final"]),
    (dict(retries=2),                               ["cancelled"],                    ["final"]),
    (dict(retries=0, infra_retries=2),              ["infrastructure"] * 3,           ["retry", "retry", "final"]),
    (dict(retries=1, infra_retries=1),              ["infrastructure", "error", "error"],
                                                                                      ["retry", "retry", "final"]),
    (dict(retries=0),                               ["oom"],                          ["final"]),
    (dict(retries=1),                               ["oom", "oom"],                   ["retry", "final"]),
    (dict(retries=0, more_memory=(2 * GIB, 4 * GIB)), ["oom", "oom", "oom"],          ["grow", "grow", "final"]),
    # retries count afresh at a new size
    (dict(retries=1, more_memory=(2 * GIB,)),       ["oom", "error", "error"],        ["grow", "retry", "final"]),
    # told to stop with a checkpoint saved: infra_retries, never retries
    (dict(retries=0, infra_retries=2),              ["requeue"] * 3,                  ["retry", "retry", "final"]),
    (dict(retries=1, infra_retries=2),              ["requeue", "infrastructure", "error", "error"],
                                                                                      ["retry", "retry", "retry", "final"]),
    (dict(retries=1, infra_retries=1, more_memory=(2 * GIB,)),
                                                    ["error", "oom", "infrastructure", "error", "error"],
                                                                                      ["retry", "grow", "retry", "retry", "final"]),
]


@pytest.mark.parametrize("resources,losses,expected", TABLE)
def test_the_rule(resources, losses, expected):
    assert walk(Resources(**resources), losses) == expected


def test_a_grown_task_counts_only_its_attempts_at_the_new_size():
    decision = attempts.after(Resources(retries=1, more_memory=(2 * GIB,)), 3, "oom",
                              Tally(infra_lost=1, before=0, step=0))
    assert decision.tally == Tally(infra_lost=1, before=2, step=1)
    assert decision.tally.uncounted == 3


@pytest.mark.parametrize("attempt,uncounted,ok,final", [
    (1, 0, True, True), (1, 0, False, False), (2, 0, False, True), (2, 1, False, False),
    (3, 1, False, True)])
def test_the_worker_marks_an_output_final_when_no_retry_follows(attempt, uncounted, ok, final):
    assert attempts.output_is_final(Resources(retries=1), attempt, uncounted, ok) is final


# -- AWS Batch follows the rule through its retryStrategy -----------------------------------
# How Batch ends an attempt lost each way (the fields spmd_aws.reasons reads): "Job status
# reasons" and "CannotPullContainer errors" in the AWS Batch user guide.
BATCH_ENDS = {
    "error": {"statusReason": "Essential container in task exited", "reason": "", "exitCode": 1},
    "infrastructure": {"statusReason": "Task failed to start",
                       "reason": "CannotPullContainerError: pull image manifest has been retried",
                       "exitCode": None},
    "oom": {"statusReason": "Essential container in task exited",
            "reason": "OutOfMemoryError: Container killed due to memory usage", "exitCode": 137},
    # a spot instance reclaimed: ECS stops the container (SIGTERM, the worker saves its
    # checkpoint and exits REQUEUE_EXIT) and Batch says the host went away
    "requeue": {"statusReason": "Host EC2 (instance i-0123456789abcdef0) terminated.",
                "reason": "", "exitCode": 75},
}


def batch_action(strategy: dict, end: dict) -> str:
    """Batch's choice after a failed attempt ("Automated job retries", and the RetryStrategy
    page: the first evaluateOnExit entry whose every condition matches decides; none
    matches: RETRY; conditions are globs, a * only at the end)."""
    import fnmatch
    fields = {"onStatusReason": end["statusReason"], "onReason": end["reason"],
              "onExitCode": "" if end["exitCode"] is None else str(end["exitCode"])}
    for rule in strategy["evaluateOnExit"]:
        if all(fnmatch.fnmatchcase(fields[k], v) for k, v in rule.items() if k != "action"):
            return rule["action"]
    return "RETRY"


def batch_walk(resources: Resources, losses: list) -> list[str]:
    """The decisions Batch and spmd_aws take together: Batch retries within one job's
    attempts; a kill for memory with a larger size left EXITs there and spmd_aws.memory
    submits the task again at that size, with a fresh count; Batch never retries an attempt
    that ran past its timeout ("Job timeouts", AWS Batch user guide)."""
    from spmd_aws.config import MAX_ATTEMPTS
    from spmd_aws.reasons import retry_strategy
    strategy = retry_strategy(resources, MAX_ATTEMPTS, fargate=False, short_timeout=False)
    kinds, in_job, step = [], 0, 0
    for lost in losses:
        in_job += 1
        if lost == "timeout":
            kinds.append("final")
            break
        if batch_action(strategy, BATCH_ENDS[lost]) == "RETRY" and in_job < strategy["attempts"]:
            kinds.append("retry")
            continue
        if lost == "oom" and step + 1 < len(resources.memory_sizes):
            kinds.append("grow")
            in_job, step = 0, step + 1
            continue
        kinds.append("final")
        break
    return kinds


#: Batch keeps one count of attempts per job: with retries > 0 a loss to the infrastructure
#: uses one of the retries + 1 attempts (spmd_aws.reasons.retry_strategy says so, and
#: docs/aws.md). These rows are where AWS departs from the rule, and how.
BATCH_DEPARTS = [
    # resources                                     losses                            Batch
    (dict(retries=1, infra_retries=1),              ["infrastructure", "error", "error"],
                                                                                      ["retry", "final"]),
    (dict(retries=1, infra_retries=2),              ["requeue", "infrastructure", "error", "error"],
                                                                                      ["retry", "final"]),
    (dict(retries=1, infra_retries=1, more_memory=(2 * GIB,)),
                                                    ["error", "oom", "infrastructure", "error", "error"],
                                                    # at 2 GiB the infra loss spent the retry
                                                                                      ["retry", "grow", "retry", "final"]),
]


def batch_departure(resources: dict, losses: list) -> list[str] | None:
    return next((aws for r, l, aws in BATCH_DEPARTS if r == resources and l == losses), None)


@pytest.mark.parametrize("row", [i for i, r in enumerate(TABLE) if "cancelled" not in r[1]])
def test_aws_batch_retry_strategy_follows_the_rule(row):
    resources, losses, expected = TABLE[row]
    departs = batch_departure(resources, losses)
    assert batch_walk(Resources(**resources), losses) == (departs or expected)
    if departs:  # and the departure is only ever fewer attempts, never more
        assert len(departs) < len(expected) and departs[-1] == "final"


# -- The Slurm batch script follows the rule ------------------------------------------------
# The script (spmd_slurm.script) runs every attempt of a task in one allocation, in bash. It
# runs here under bash as Slurm would start it, with a stand-in `docker` on PATH that ends
# each attempt as the plan says: exit 1 (a call raised), 125 (docker could not start the
# container: a loss to the infrastructure), 137 with State.OOMKilled (memory), or 124 after
# the attempt's timeout.
FAKE_DOCKER = r"""#!/bin/bash
plan={plan}
case "$1" in
  run)  word=$(head -n 1 "$plan"); sed -i 1d "$plan"; echo "$word" > "$plan.last"
        case "$word" in
          ok) exit 0;; error) exit 1;; infrastructure) exit 125;; oom) exit 137;;
          timeout) sleep 1.2; exit 124;;
          requeue) kill -USR1 $PPID; sleep 0.3; exit 75;;  # Slurm's warning, then the
        esac;;                                             # worker saved its checkpoint
  inspect) [ "$(cat "$plan.last" 2>/dev/null)" = oom ] && echo true || echo false;;
esac
exit 0
"""


def slurm_walk(resources: Resources, losses: list, tmp_path) -> list[str]:
    """The decisions the batch script took, read from its marks: each attempt it ran after a
    failed one is a retry; the run ends final after the last failure."""
    import os
    import subprocess

    from spmd.batch_queue import ArraySpec
    from spmd_slurm.script import Options, render

    plan = tmp_path / "plan"
    plan.write_text("".join(f"{w}\n" for w in [*losses, "ok"]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER.format(plan=plan))
    (bin_dir / "docker").chmod(0o755)
    # Slurm's requeue: this run ends (as Slurm ends it) and the task runs again, its
    # SLURM_RESTART_COUNT one more
    (bin_dir / "scontrol").write_text(f"#!/bin/bash\necho >> {plan}.requeued\n"
                                       "(sleep 0.3; kill -TERM $PPID) >/dev/null 2>&1 &\n")
    (bin_dir / "scontrol").chmod(0o755)
    spec = ArraySpec("job-1", "img", ("python3", "-m", "spmd.task.worker"), 1, resources)
    script = tmp_path / "task.sh"
    script.write_text(render(spec, 0, 1, Options(runtime="docker", shared_dir=str(tmp_path)),
                             str(tmp_path / "marks"), str(tmp_path / "out")))
    requeued = tmp_path / "plan.requeued"
    for restarts in range(10):
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "0",
               "SLURM_ARRAY_JOB_ID": "7000", "SLURM_RESTART_COUNT": str(restarts),
               "TMPDIR": str(tmp_path)}
        subprocess.run(["bash", str(script)], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)  # a left `sleep` holds no pipe
        if not requeued.exists() or len(requeued.read_text().splitlines()) == restarts:
            break
    ran = len((tmp_path / "plan").read_text().splitlines())
    attempts = len(losses) + 1 - ran
    return ["retry"] * (attempts - 1) + (["final"] if ran else [])


@pytest.mark.parametrize("row", [i for i, r in enumerate(TABLE)
                                 if "cancelled" not in r[1] and not r[0].get("more_memory")])
def test_the_slurm_batch_script_follows_the_rule(row, tmp_path):
    """Rows with memory sizes are refused on the client (Slurm does not grow memory);
    cancelling is scancel's, outside the script."""
    resources, losses, expected = TABLE[row]
    if "timeout" in losses:
        resources = {**resources, "timeout": 1}
    assert slurm_walk(Resources(**resources), losses, tmp_path) == expected


@pytest.mark.parametrize("infra_retries", [0, 1, 3])
def test_a_queue_counting_requeues_itself_allows_infra_retries_of_them(infra_retries):
    resources = Resources(retries=2, infra_retries=infra_retries)
    assert attempts.allowed(resources, "requeue") == infra_retries
    assert attempts.allowed(resources, "infrastructure") == infra_retries
    assert attempts.allowed(resources, "error") == 2
    assert walk(resources, ["requeue"] * 5).count("retry") == infra_retries


# -- The engines are generated from the rule: change the rule, and they follow --------------
def never_retry_errors(resources, attempt, lost, tally=Tally()):
    """A different rule: the user's code runs once; losses to the infrastructure as before."""
    if lost in ("error", "oom"):
        return attempts.Decision("final", tally)
    return RULE(resources, attempt, lost, tally)


def one_infra_loss_fewer(resources, attempt, lost, tally=Tally()):
    """A different rule: infra_retries - 1 losses to the infrastructure are retried."""
    if lost in attempts.INFRA and tally.infra_lost + 1 >= resources.infra_retries:
        return attempts.Decision("final", tally)
    return RULE(resources, attempt, lost, tally)


RULE = attempts.after
CHANGED = [  # rule, resources, losses: rows whose decisions the changed rule changes
    (never_retry_errors, dict(retries=2), ["error", "error", "error"]),
    (never_retry_errors, dict(retries=1, infra_retries=2), ["requeue", "infrastructure", "error", "error"]),
    (one_infra_loss_fewer, dict(retries=0, infra_retries=2), ["infrastructure"] * 3),
    (one_infra_loss_fewer, dict(retries=0, infra_retries=2), ["requeue"] * 3),
]


@pytest.mark.parametrize("rule,resources,losses", CHANGED)
def test_the_engines_follow_a_changed_rule(rule, resources, losses, monkeypatch, tmp_path):
    """Edit spmd.attempts.after alone, and Slurm's script and AWS's retryStrategy change with
    it: neither keeps a copy of the rule."""
    before = walk(Resources(**resources), losses)
    monkeypatch.setattr(attempts, "after", rule)
    expected = walk(Resources(**resources), losses)
    assert expected != before  # the row tells the two rules apart
    assert slurm_walk(Resources(**resources), losses, tmp_path) == expected
    assert batch_walk(Resources(**resources), losses) == expected


def test_the_slurm_table_is_short_for_the_defaults_and_bounded_for_large_budgets():
    from spmd_slurm.decisions import table
    assert table(Resources()).splitlines() == ["        infrastructure:1:[0-2]) echo retry;;",
                                               "        requeue:1:[0-2]) echo retry;;"]
    assert table(Resources(infra_retries=0)) == ""
    assert len(table(Resources(retries=1000, infra_retries=40)).splitlines()) <= 20
    with pytest.raises(ResourceError, match="more than 100000 states"):  # not a hang
        table(Resources(retries=10**6))


def test_the_batch_script_keeps_no_budget_of_its_own():
    from spmd.batch_queue import ArraySpec
    from spmd_slurm.script import Options, render
    spec = ArraySpec("job-1", "img", ("python3",), 1, Resources(retries=4, infra_retries=2))
    text = render(spec, 0, 1, Options(), "/marks", "/out")
    assert "retries=" not in text.replace("infra_retries=2 allows", "")
    assert "-gt \"$retries\"" not in text and "-ge \"$infra_retries\"" not in text


@pytest.mark.parametrize("low,high", [(0, 0), (0, 2), (1, 100), (7, 1234), (19, 21), (99, 1000),
                                      (0, 12), (300, 3099)])
def test_a_range_of_numbers_is_a_few_bash_globs(low, high):
    import fnmatch
    from spmd_slurm.decisions import globs
    patterns = globs(low, high)
    assert len(patterns) <= 2 * len(str(high))
    for n in range(0, 4000):
        assert any(fnmatch.fnmatchcase(str(n), p) for p in patterns) == (low <= n <= high), n
