"""Parsing of human resource sizes ("4GiB", "512M") into bytes."""
from __future__ import annotations

import re

from .errors import ConfigError

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gib": 2**30,
    "t": 10**12, "tb": 10**12, "tib": 2**40,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: str | int, *, key: str = "memory") -> int:
    """Bytes from an int or a string like '2GiB', '512MiB', '4GB'; ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not a size; write it like '2GiB' or '512MiB'", key=key)
    if isinstance(value, int):
        number, unit = value, ""
    elif isinstance(value, str) and (match := _PATTERN.match(value)):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ConfigError(f"{key}={value!r} is not a size; write it like '2GiB' or '512MiB'", key=key)
    if unit not in _UNITS:
        raise ConfigError(f"{key}={value!r} has an unknown unit {unit!r}; use one of "
                          "B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)", key=key)
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"{key}={value!r} must be more than zero", key=key)
    return size


def format_bytes(size: int) -> str:
    """A short human form of a byte count, e.g. '2.0GiB'."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor:
            return f"{size / factor:.1f}{unit}"
    return f"{size}B"
