"""The failure budget on the backend under test: a broken run stops, what succeeded stays.

    FailureBudgetContract   with max_failures=1, once two items failed the items that had not
                            started end with spmd.FailureBudgetSpent (the count and the error
                            type in its message); the item that succeeded keeps its result;
                            nothing hangs
"""
from __future__ import annotations

import spmd

from . import functions as fn
from .fixtures import WAIT, BackendFixtures

ITEMS = 6


class FailureBudgetContract(BackendFixtures):
    """``max_failures`` on the backend under test (tasks one at a time, so most are pending)."""

    def test_budget_a_spent_failure_budget_cancels_what_has_not_started(self, spmd_knot,
                                                                         spmd_exclusive):
        # item 0 succeeds after 1 s, every other item fails after 1 s
        items = [1.0] + [-1.0] * (ITEMS - 1)
        job = spmd_knot(fn.sleepy_or_fail, **spmd_exclusive).map(items, chunksize=1, max_failures=1)
        errors = [f.exception(timeout=WAIT) for f in job.futures]
        assert errors[0] is None and job.futures[0].result() == 1.0
        failed = [e for e in errors if isinstance(e, ValueError)]
        stopped = [e for e in errors if isinstance(e, spmd.FailureBudgetSpent)]
        assert len(failed) >= 2, errors
        assert len(failed) + len(stopped) == ITEMS - 1, errors
        assert len(stopped) >= 2, f"the budget stopped nothing: {errors}"
        assert "max_failures=1" in str(stopped[0]) and "ValueError" in str(stopped[0])
