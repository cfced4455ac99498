"""``spmd doctor``: everything a first run needs, checked before the run, one line each.

    config ──> the backend opens ──> its store takes a write, a read and a delete
           ──> the backend's own checks (``Backend.doctor_checks``): the engine, the
               scheduler's commands, credentials, the stack ...

A check that fails says what to do. Checks after a failed one still run where they can, so
one run shows every problem at once.
"""
from __future__ import annotations

import secrets
from typing import Iterable, Iterator

from ..checks import Check, probe
from ..config import Settings


def run(settings: Settings) -> Iterator[Check]:
    """Every check of the configured backend, in order."""
    from ..plugins import open_backend
    try:
        backend = open_backend(settings)
    except Exception as exc:
        yield Check("backend", False, f"{settings.backend}: {exc}",
                    "set it in your config (spmd config shows each value and where it came "
                    "from); spmd backends lists the installed backends")
        return
    yield Check("backend", True, f"{settings.backend} ({type(backend).__module__})")
    yield probe("store", lambda: _store_round_trip(backend.store),
                "make the store's place exist and writable by you (store_dir, shared_dir or "
                "the bucket), or change it in your config")
    yield from backend.doctor_checks()


def _store_round_trip(store) -> str:
    key = f"spmd-doctor/{secrets.token_hex(4)}"
    store.put(key, b"spmd doctor\n")
    try:
        if store.get(key) != b"spmd doctor\n":
            raise OSError(f"the store returned other bytes than were written at {key}")
    finally:
        store.delete(key)
    return f"{store.url}: written, read back and removed"


def report(checks: Iterable[Check], out) -> bool:
    """Print each check as it completes; True when all hold."""
    healthy = True
    for check in checks:
        print(check.line(), file=out, flush=True)
        healthy = healthy and check.ok
    return healthy
