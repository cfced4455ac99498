"""What ``spmd doctor`` reports: one finding per check, and the way to take one.

A leaf, so that a backend can describe its own checks (``Backend.doctor_checks``) without
importing the doctor that runs them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, whether it holds, what was seen, and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"{mark} {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text}\n     fix: {self.fix}"


def probe(name: str, attempt: Callable[[], str], fix: str) -> Check:
    """Run one check: ``attempt`` returns what it saw, or raises what is wrong."""
    try:
        return Check(name, True, attempt())
    except Exception as exc:  # a doctor reports every failure, whatever its type
        return Check(name, False, f"{type(exc).__name__}: {exc}".strip().splitlines()[0], fix)
