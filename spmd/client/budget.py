"""The failure budget: when a job has failed enough items to be called broken, what has not
started is cancelled. Pure; the Job's watcher asks it after each poll.

    knot.map(items, max_failures=10)     more than 10 failed items: stop
    knot.map(items, max_failures=0.05)   more than 5% of the items: stop
    knot.map(items, max_failures=math.inf)  never stop
    knot.map(items)                      the first EARLY_STOP items to end all failed, with
                                         one error type: a broken image, a missing input
                                         folder or a typo fails them all the same way
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from ..errors import ConfigError

#: the default rule: this many items ended, every one failed with the same error type
EARLY_STOP = 10


def limit_of(max_failures: int | float | None, n_items: int) -> int | None:
    """The most failed items a job of n_items may have (None: the default rule). Refuses
    anything but a count, a fraction in (0, 1), math.inf or None, naming the value."""
    if max_failures is None:
        return None
    if isinstance(max_failures, bool) or not isinstance(max_failures, (int, float)) \
            or math.isnan(max_failures) or max_failures < 0:
        raise ConfigError(f"max_failures={max_failures!r} must be a number of items (10), a "
                          f"fraction of them (0.05), math.inf to never stop, or None for the "
                          f"default rule", key="max_failures")
    if math.isinf(max_failures):
        return n_items
    if isinstance(max_failures, float) and 0 < max_failures < 1:
        return math.floor(max_failures * n_items)
    if isinstance(max_failures, float) and not max_failures.is_integer():
        raise ConfigError(f"max_failures={max_failures!r}: a fraction must be between 0 and 1, "
                          f"a count a whole number", key="max_failures")
    return int(max_failures)


@dataclass(frozen=True)
class Ended:
    """One item as it ended: its index, and the type and message of its error (None: ok)."""

    item: int
    error_type: str | None = None
    message: str = ""


def spent(limit: int | None, ended: list[Ended]) -> str | None:
    """Why the budget is spent, or None. ``ended`` is in the order the items ended."""
    failed = [e for e in ended if e.error_type is not None]
    if limit is None:
        first = ended[:EARLY_STOP]
        if len(first) < EARLY_STOP or len({e.error_type for e in first}) != 1 \
                or first[0].error_type is None:
            return None
        rule = f"the first {EARLY_STOP} items to end all failed with {first[0].error_type}"
    elif len(failed) > limit:
        rule = f"{len(failed)} items failed, more than max_failures={limit}"
    else:
        return None
    return f"{rule}; {summary(failed)}"


def summary(failed: list[Ended], examples: int = 3) -> str:
    """The errors grouped by type, most frequent first, each with its first item and message."""
    counts = Counter(e.error_type for e in failed)
    first: dict[str, Ended] = {}
    for e in failed:
        first.setdefault(e.error_type, e)
    groups = [f"{kind} ×{n} (first: item {first[kind].item}: {_short(first[kind].message)})"
              for kind, n in counts.most_common(examples)]
    more = len(counts) - examples
    return "errors: " + "; ".join(groups) + (f"; and {more} more types" if more > 0 else "")


def _short(message: str, width: int = 160) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= width else line[:width - 1] + "…"
