"""The attempt rule (spmd.attempts) as a table, and the engines that follow it."""
import pytest

from spmd import attempts
from spmd.attempts import Tally
from spmd.batch_queue import Resources

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


@pytest.mark.parametrize("infra_retries", [0, 1, 3])
def test_a_queue_counting_requeues_itself_allows_infra_retries_of_them(infra_retries):
    resources = Resources(retries=2, infra_retries=infra_retries)
    assert attempts.infra_allowed(resources) == infra_retries
    assert walk(resources, ["requeue"] * 5).count("retry") == infra_retries
