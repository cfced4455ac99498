"""The functions every runner maps, the same code for spmd and its peers.

CPU work is measured in this process's CPU time, so an item costs the same CPU whatever
else the machine runs; the wall time of a map is what the benchmark reports.
"""
from __future__ import annotations

import time


def spin(seconds: float, value=None):
    """Burn seconds of CPU time; returns value (or seconds)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return seconds if value is None else value


def noop(x):
    return x


def double(array):
    """8 MB in, 8 MB out."""
    return array * 2


def uneven(i: int, n: int, short: float):
    """Items of ``short`` CPU seconds, the last n // 8 of them ten times longer."""
    return spin(short * 10 if i >= n - n // 8 else short, i)
