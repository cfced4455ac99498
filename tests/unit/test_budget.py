"""The failure budget's rule (spmd.client.budget) and map()'s checks of max_failures."""
import math

import pytest

import spmd
from spmd.testing import functions
from spmd.client import budget
from spmd.client.budget import EARLY_STOP, Ended


def failures(n, kind="ValueError", start=0):
    return [Ended(i, kind, f"bad input {i}") for i in range(start, start + n)]


@pytest.mark.parametrize("value,n_items,limit", [
    (None, 100, None), (0, 100, 0), (10, 100, 10), (0.05, 100, 5), (0.05, 10, 0),
    (math.inf, 100, 100), (3.0, 100, 3)])
def test_limits(value, n_items, limit):
    assert budget.limit_of(value, n_items) == limit


@pytest.mark.parametrize("value", [-1, True, "10", 2.5, float("nan"), [1]])
def test_a_bad_max_failures_is_refused_naming_it(value):
    with pytest.raises(spmd.ConfigError, match="max_failures="):
        budget.limit_of(value, 100)


def test_a_count_is_spent_when_exceeded_and_says_by_what():
    assert budget.spent(2, failures(2)) is None
    why = budget.spent(2, failures(2) + failures(1, "KeyError", 5))
    assert why.startswith("3 items failed, more than max_failures=2")
    assert "ValueError ×2 (first: item 0: bad input 0)" in why and "KeyError ×1" in why


def test_the_default_stops_when_the_first_items_all_failed_alike():
    assert budget.spent(None, failures(EARLY_STOP - 1)) is None
    assert budget.spent(None, failures(EARLY_STOP)).startswith(
        f"the first {EARLY_STOP} items to end all failed with ValueError")


def test_the_default_goes_on_after_a_success_or_mixed_errors():
    assert budget.spent(None, [Ended(99)] + failures(50)) is None
    assert budget.spent(None, failures(EARLY_STOP - 1) + failures(1, "OSError", 20) + failures(40)) is None


def test_map_refuses_a_bad_budget_before_submitting(knot):
    k = knot(functions.square)
    with pytest.raises(spmd.ConfigError, match="max_failures=-2"):
        k.map(range(3), max_failures=-2)
