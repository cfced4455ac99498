"""Slurm dependencies of one map's arrays: the concurrency cap and chained maps.

    max_parallel=N      every array --array=...%N; each array after the first waits for the
                        one before (afterany), so never more than N tasks of the map run
    chained, aligned    after_tasks[t] == [t] for every task, and the upstream array at the
                        same offset: aftercorr:<that array> (task i after task i succeeded)
    otherwise           (a gather, items reused upstream, unaligned): afterany:<every upstream
                        array a task of this array waits for>

Upstream arrays whose tasks have all ended are left out: Slurm forgets jobs after MinJobAge,
and sbatch refuses a dependency on a job it does not know.
"""
from __future__ import annotations

import json

from spmd.batch_queue import ArraySpec

Array = tuple[str, int, int]  # slurm id, first task, tasks


def upstream_arrays(spec: ArraySpec) -> list[Array]:
    """The arrays of the job a chained map follows (from its queue handle); [] for none."""
    if not spec.after_handle:
        return []
    return [(str(a), int(o), int(n)) for a, o, n in json.loads(spec.after_handle)["arrays"]]


def aligned(spec: ArraySpec) -> bool:
    """Whether task t waits for upstream task t alone, for every task (a chained map)."""
    return bool(spec.after_tasks) and len(spec.after_tasks) == spec.n_tasks and \
        all(tuple(w) == (t,) for t, w in enumerate(spec.after_tasks))


def for_array(spec: ArraySpec, offset: int, n: int, upstream: list[Array],
              ended: set[str], before: str | None) -> str:
    """The ``--dependency`` value of tasks offset..offset+n-1 ('' for none); ``ended``: the
    upstream arrays whose tasks have all ended; ``before``: the array submitted before this
    one (waited for under max_parallel)."""
    parts = []
    live = [u for u in upstream if u[0] not in ended]
    same = [u for u in live if u[1] == offset and u[2] >= n]
    if live and aligned(spec) and same:
        parts.append(f"aftercorr:{same[0][0]}")
    elif live:
        needed = {t for w in spec.after_tasks[offset:offset + n] for t in w}
        ids = [a for a, o, m in live if any(o <= t < o + m for t in needed)]
        if ids:
            parts.append("afterany:" + ":".join(ids))
    if spec.max_parallel and before:
        parts.append(f"afterany:{before}")
    return ",".join(parts)
