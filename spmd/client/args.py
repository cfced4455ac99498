"""How one input item becomes a call: a value, a tuple for starmap, or ``Args(*a, **kw)``."""
from __future__ import annotations

from typing import Any


class Args:
    """Positional and keyword arguments for one call: ``Args(subject, b0_threshold=20)``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Args({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Args) and (self.args, self.kwargs) == (other.args, other.kwargs)


def as_call(item: Any, starmap: bool) -> tuple[tuple, dict]:
    """(args, kwargs) for one item."""
    if isinstance(item, Args):
        return item.args, item.kwargs
    if starmap:
        if not isinstance(item, (tuple, list)):
            raise TypeError(f"with starmap=True every item must be a tuple of arguments, "
                            f"got {type(item).__name__}: {item!r:.80}")
        return tuple(item), {}
    return (item,), {}
