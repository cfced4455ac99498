"""The attempt rule, in one place: after an attempt ends, does its task run again, at which
memory size, or is that attempt final? Pure; the scheduler core, the worker's ``final`` flag
and the in-memory test queue ask it, and the engines that retry by themselves are generated
from it: Slurm's batch script carries a table of its decisions (spmd_slurm.decisions) and AWS
Batch's retryStrategy counts its ``allowed`` attempts (spmd_aws.reasons).

    ended   ──> "oom" with a larger size left ─────────────> grow  (retries count afresh)
            ──> "infrastructure" or "requeue" within infra_retries ──> retry (retries not
                    charged; "requeue": told to stop, its checkpoint saved, spmd.task.checkpoint)
            ──> an error (or "oom" at the largest size)
                    with fewer than retries + 1 counted ───────> retry
            ──> "timeout", "cancelled", or a budget spent ────> final
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .batch_queue import Resources

#: how an attempt was lost (``TaskStatus.lost``); None: the user's code failed (exit 1)
Lost = Literal["oom", "timeout", "infrastructure", "requeue", "cancelled", "error", None]
#: losses charged to infra_retries: the infrastructure's doing, not the user's code's
INFRA = ("infrastructure", "requeue")


@dataclass(frozen=True)
class Tally:
    """A task's attempts so far, as the budgets count them."""

    infra_lost: int = 0  # attempts lost to infrastructure or requeued: infra_retries only
    before: int = 0      # attempts at smaller memory sizes: charged to nothing any more
    step: int = 0        # the memory size the last attempt ran at (index in memory_sizes)

    @property
    def uncounted(self) -> int:
        """Earlier attempts that ``retries`` does not count (spmd.protocol.INFRA_LOST)."""
        return self.infra_lost + self.before


@dataclass(frozen=True)
class Decision:
    """``kind`` is "final", "retry" or "grow"; ``tally`` is the task's tally for the next
    attempt (unchanged when final)."""

    kind: Literal["final", "retry", "grow"]
    tally: Tally

    @property
    def again(self) -> bool:
        return self.kind != "final"


def after(resources: Resources, attempt: int, lost: Lost, tally: Tally = Tally()) -> Decision:
    """What follows a failed attempt number ``attempt`` (from 1) that was lost as ``lost``."""
    if lost in ("timeout", "cancelled"):
        return Decision("final", tally)
    if lost == "oom" and tally.step + 1 < len(resources.memory_sizes):
        return Decision("grow", Tally(tally.infra_lost, attempt - tally.infra_lost, tally.step + 1))
    if lost in INFRA:
        if tally.infra_lost < resources.infra_retries:
            return Decision("retry", replace(tally, infra_lost=tally.infra_lost + 1))
        return Decision("final", tally)
    if attempt - tally.uncounted < resources.retries + 1:
        return Decision("retry", tally)
    return Decision("final", tally)


def output_is_final(resources: Resources, attempt: int, uncounted: int, ok: bool) -> bool:
    """The worker's ``TaskOutput.final``: no retry follows an attempt whose calls all
    succeeded, or whose failure spends the retries (``uncounted`` earlier attempts aside)."""
    return ok or not after(resources, attempt, "error", Tally(before=uncounted)).again


def allowed(resources: Resources, lost: Lost, most: int | None = None) -> int:
    """How many attempts in a row, each lost as ``lost``, run again before one is final (at
    most ``most``): the count an engine that keeps one number per kind of loss is given."""
    tally, count = Tally(), 0
    while most is None or count < most:
        decision = after(resources, count + 1, lost, tally)
        if not decision.again:
            break
        tally, count = decision.tally, count + 1
    return count
