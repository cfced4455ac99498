"""The attempt rule (spmd.attempts) as a bash ``case`` table, for the batch script.

The script only says how an attempt ended and counts; the table answers "retry" or "final":

    decide LOST COUNTED INFRA
        LOST     the rule's Lost kind: error, oom, timeout, infrastructure, requeue
        COUNTED  the attempts ``retries`` counts, this one included (attempt - requeues)
        INFRA    losses to the infrastructure before this one (Slurm's restarts, and
                 docker runs that could not start the container)

``table`` asks ``spmd.attempts.after`` about every state the script can reach with the
array's resources, from (1, 0) by the script's own steps (a retry after an error counts one
more attempt; after a loss to the infrastructure, one more such loss), and writes each
kind's "retry" states as glob ranges of both numbers ("error:[1-9]:[0-3]"); anything else is
final. A range takes a few globs per digit, so the table stays a few lines however large
``retries`` is.
"""
from __future__ import annotations

from dataclasses import replace
from itertools import groupby

from spmd import attempts
from spmd.attempts import INFRA, Tally
from spmd.batch_queue import Resources
from spmd.errors import ResourceError

#: how the script can tell an attempt ended (a cancel is scancel's, outside the script)
KINDS = ("error", "oom", "timeout", "infrastructure", "requeue")
MAX_STATES = 100_000  # states the table may be computed from


def retries(resources: Resources) -> dict[str, set[tuple[int, int]]]:
    """Per kind, the (counted, infra) states the script can reach where the rule retries.
    Slurm runs one memory size (its queue does not grow memory), so the rule sees one."""
    resources = replace(resources, more_memory=())
    found: dict[str, set[tuple[int, int]]] = {kind: set() for kind in KINDS}
    seen, todo = {(1, 0)}, [(1, 0)]
    while todo:
        counted, infra = todo.pop()
        for kind in KINDS:
            if not attempts.after(resources, counted + infra, kind, Tally(infra_lost=infra)).again:
                continue
            found[kind].add((counted, infra))
            step = (counted, infra + 1) if kind in INFRA else (counted + 1, infra)
            if step not in seen:
                seen.add(step)
                todo.append(step)
        if len(seen) > MAX_STATES:
            raise ResourceError(
                f"retries={resources.retries} with infra_retries={resources.infra_retries} "
                f"gives the Slurm batch script more than {MAX_STATES} states; ask for fewer")
    return found


def table(resources: Resources, indent: str = "        ") -> str:
    """The ``case`` lines that say "retry"; the script's own ``*)`` line says "final"."""
    lines = []
    for kind, states in retries(resources).items():
        for counted, infra in rectangles(states):
            for c in globs(*counted):
                patterns = "|".join(f"{kind}:{c}:{i}" for i in globs(*infra))
                lines.append(f"{indent}{patterns}) echo retry;;")
    return "\n".join(lines)


def rectangles(states: set[tuple[int, int]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``states`` as ((counted from, to), (infra from, to)) ranges: the runs of counted at each
    infra, joined over neighbouring infra values that have the same runs."""
    by_infra = {infra: runs(sorted(c for c, i in states if i == infra))
                for infra in sorted({i for _, i in states})}
    out = []
    for first, last in runs(sorted(by_infra)):  # infra values next to each other
        for counted_runs, same in groupby(range(first, last + 1), key=by_infra.__getitem__):
            infra = list(same)
            out += [(counted, (infra[0], infra[-1])) for counted in counted_runs]
    return out


def runs(numbers: list[int]) -> tuple[tuple[int, int], ...]:
    """Sorted numbers as runs of consecutive ones: [1, 2, 3, 7] -> ((1, 3), (7, 7))."""
    out: list[list[int]] = []
    for n in numbers:
        if out and out[-1][1] + 1 == n:
            out[-1][1] = n
        else:
            out.append([n, n])
    return tuple((a, b) for a, b in out)


def globs(low: int, high: int) -> list[str]:
    """Bash glob patterns that match exactly the decimal numbers low..high (low >= 0)."""
    if len(str(low)) < len(str(high)):  # split where the number of digits changes
        top = 10 ** len(str(low)) - 1
        return globs(low, top) + globs(top + 1, high)
    return _same_length(str(low), str(high))


def _same_length(low: str, high: str) -> list[str]:
    if low == high:
        return [low]
    if len(low) == 1:
        return [f"[{low}-{high}]"]
    if low[0] == high[0]:
        return [low[0] + p for p in _same_length(low[1:], high[1:])]
    rest = len(low) - 1
    out, first, last, tail = [], int(low[0]), int(high[0]), []
    if low[1:] != "0" * rest:  # the numbers from low to the end of its leading digit
        out = [low[0] + p for p in _same_length(low[1:], "9" * rest)]
        first += 1
    if high[1:] != "9" * rest:  # the numbers from the start of high's leading digit to it
        tail = [high[0] + p for p in _same_length("0" * rest, high[1:])]
        last -= 1
    if first <= last:
        lead = str(first) if first == last else f"[{first}-{last}]"
        out.append(lead + "[0-9]" * rest)
    return out + tail
