"""The failure budget on the backend under test: a broken run stops, what succeeded stays.

    FailureBudgetContract   with max_failures=1, once two items failed the items that had not
                            started end with spmd.FailureBudgetSpent (the count and the error
                            type in its message); nothing hangs; and a task that was running
                            when the budget was spent runs to its end (its result kept), on
                            every queue that tells pending tasks apart (one that overrides
                            BatchQueue.cancel_pending; the default cancels everything)
"""
from __future__ import annotations

import spmd
from spmd.batch_queue import BatchQueue

from . import functions as fn
from .fixtures import WAIT, BackendFixtures

ITEMS = 8
#: seconds item 0 runs: long enough for two failures, one after the other, to spend the
#: budget while it runs
LONG = 15.0


class FailureBudgetContract(BackendFixtures):
    """``max_failures`` on the backend under test (two tasks at a time: item 0 runs long
    beside the failing ones, and the rest are pending when the budget is spent)."""

    def test_budget_a_spent_failure_budget_cancels_what_has_not_started(self, spmd_knot,
                                                                         spmd_backend):
        capacity = spmd_backend.capacity()
        half = {"vcpus": capacity.vcpus / 2, "memory": min(capacity.memory // 2, 2**30)}
        # item 0 succeeds after LONG s, every other item fails after 1 s
        items = [LONG] + [-1.0] * (ITEMS - 1)
        job = spmd_knot(fn.sleepy_or_fail, **half).map(items, chunksize=1, max_failures=1)
        order = [job.futures.index(f) for f in spmd.as_completed(job, timeout=WAIT)]
        errors = [f.exception() for f in job.futures]
        failed = [e for e in errors[1:] if isinstance(e, ValueError)]
        stopped = [i for i, e in enumerate(errors) if i and isinstance(e, spmd.FailureBudgetSpent)]
        assert len(failed) >= 2, errors
        assert len(failed) + len(stopped) == ITEMS - 1, errors
        assert len(stopped) >= 2, f"the budget stopped nothing: {errors}"
        assert "max_failures=1" in str(errors[stopped[0]]) and "ValueError" in str(errors[stopped[0]])
        if type(spmd_backend.queue).cancel_pending is BatchQueue.cancel_pending:
            # this queue cancels running tasks too (BatchQueue's documented default)
            assert errors[0] is None or isinstance(errors[0], spmd.FailureBudgetSpent), errors[0]
            return
        assert order.index(stopped[0]) < order.index(0), \
            f"item 0 ended before the budget was spent (in {LONG} s): completion order {order}"
        assert errors[0] is None and job.futures[0].result() == LONG, \
            f"item 0 was running when the budget was spent and should have finished: {errors[0]!r}"
