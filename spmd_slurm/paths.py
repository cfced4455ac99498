"""Shared filesystems: which paths of the login node every compute node sees at the same place.

    shared_paths = ["/scratch", "/project"]   (and shared_dir, which is shared by definition)

    spmd.File("/scratch/lab/bids/sub-01/")  ──> under a shared root ──> the task gets that path
    spmd.File("/home/me/notes.txt")          ──> not shared          ──> uploaded into the store
    outputs_to="/scratch/lab/derivatives/{index}/"  ──> tasks publish there themselves
    outputs_to="/home/me/out/{index}/"               ──> refused at map(): each node's own disk

A path counts as shared when it lies under a root both as written (normalised, so ``..``
cannot climb out) and as resolved (``realpath``, so a symlink under /scratch that points to
the login node's /home does not pass). A root that is itself a symlink (``/scratch`` ->
``/gpfs/scratch``) is compared in both forms.
"""
from __future__ import annotations

import os
from typing import Iterable

from spmd import config


def shared_paths(value) -> tuple[str, ...]:
    """The ``shared_paths`` config value: absolute folders, normalised, not ``/``.

    ValueError (which the config turns into a ConfigError naming the key) for anything else.
    """
    roots = []
    for text in config.string_list(value):
        expanded = os.path.expanduser(text)
        if not text or not os.path.isabs(expanded):
            raise ValueError(f"{text!r} is not an absolute path; list the mount points of the "
                             "cluster's shared filesystems, e.g. [\"/scratch\", \"/project\"]")
        root = os.path.normpath(expanded)
        if root == "/" or root == "//":
            raise ValueError("'/' would pass every path of the login node to compute nodes as "
                             "it is, its local disks too; list the shared filesystems' mount "
                             "points, e.g. [\"/scratch\", \"/project\"]")
        roots.append(root)
    return tuple(dict.fromkeys(roots))


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class SharedPaths:
    """The shared roots of one backend (``shared_paths`` and ``shared_dir``)."""

    def __init__(self, roots: Iterable[str | os.PathLike]):
        self.roots = tuple(dict.fromkeys(os.path.normpath(os.fspath(r)) for r in roots))
        self.real = tuple(dict.fromkeys(os.path.realpath(r) for r in self.roots))

    def __contains__(self, path: object) -> bool:
        """Whether tasks on any node see path, as written, at the same place."""
        if not isinstance(path, (str, os.PathLike)):
            return False
        text = os.fspath(path)
        if not os.path.isabs(text):
            return False
        return _under(os.path.normpath(text), self.roots) and \
            _under(os.path.realpath(text), self.real)

    def mounts(self) -> tuple[str, ...]:
        """The roots a task container needs bind-mounted at the same path: those that exist
        here, without one that lies inside another (the outer mount holds it)."""
        present = [r for r in self.roots if os.path.isdir(r)]
        return tuple(r for r in present if not any(o != r and _under(r, [o]) for o in present))

    def __repr__(self) -> str:
        return f"SharedPaths({list(self.roots)!r})"
