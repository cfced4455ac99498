"""Functions the data-reference contract runs in tasks (importable without pytest)."""
from __future__ import annotations

import hashlib
import os

import spmd


def describe_file(path):
    """What the task sees of a data reference: its type, whether it is a file, name, hash."""
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return {"type": type(path).__name__, "is_file": os.path.isfile(path),
            "name": os.path.basename(path), "sha256": digest}


def describe_tree(path):
    """A folder reference as (relative path, content) pairs, plus its empty folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as handle:
                found.append((os.path.relpath(full, path), handle.read().decode()))
        for name in dirnames:
            if not os.listdir(os.path.join(dirpath, name)):
                found.append((os.path.relpath(os.path.join(dirpath, name), path) + "/", ""))
    return sorted(found)


def write_outputs(label, path=None):
    """Writes two files under spmd.outputs() (one in a sub-folder); returns label."""
    out = spmd.outputs()
    (out / "result.txt").write_text(f"result of {label}\n")
    (out / "sub").mkdir()
    extra = b"" if path is None else open(path, "rb").read()
    (out / "sub" / "copy.bin").write_bytes(extra)
    return label


def hash_tree(path):
    """A folder reference as its base name and the sha256 of every file under it."""
    import hashlib
    files = {}
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as handle:
                files[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return {"name": os.path.basename(path), "files": files}


def write_label(item):
    """Writes label.txt with the item's subject under spmd.outputs(); returns the subject."""
    (spmd.outputs() / "label.txt").write_text(item["subject"] + "\n")
    return item["subject"]


def try_to_overwrite(path):
    """Tries to change a data reference's file in place; says whether that was refused."""
    try:
        with open(path, "wb") as handle:
            handle.write(b"changed")
    except OSError as exc:
        return f"refused: {exc.strerror}"
    return "written"


def read_upstream_result(label):
    """In a chained map after write_outputs: the upstream item's result.txt, and label."""
    return (spmd.upstream_files() / "result.txt").read_text().strip(), label
