"""A job's own view of the uploaded data: what its task containers mount instead of all of ``data/``.

    client: jobs/<job>/uploads.json    the blobs and folder listings the map references,
                                       signed at submit (spmd.integrity)
    scheduler: views/<job>/sha256/, views/<job>/tree/
                                       hard links to those objects only (no copy), made when
                                       the scheduler starts, removed when it ends
    task container: views/<job>/sha256 at <store>/spmd/data/sha256 (read-only), tree likewise

So a task reads its own job's inputs at their usual paths and no other job's subjects. The
view lives outside every job folder, where no task can write, and a record that changed after
submit (a task may write its job's folder) is refused rather than trusted.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from spmd import data, integrity
from spmd.errors import StoreError
from spmd.scheduling import DirectoryStore

KINDS = ("sha256", "tree")  # the folders of data/ a job's inputs live in


def view_path(store: DirectoryStore, job_id: str) -> Path:
    return store.path(f"views/{job_id}")


def _record(store: DirectoryStore, job_id: str) -> set[str]:
    """The job's uploads.json as signed at submit (none: the job uploaded nothing)."""
    key = data.uploads_key(job_id)
    try:
        raw = store.get(key)
    except KeyError:
        return set()
    try:
        intact = integrity.verify(store, job_id, key, raw)
    except integrity.Unsigned:
        intact = False
    if not intact:
        raise StoreError(f"{key} changed after the job was submitted; its tasks get no data")
    return data.uploads_of(store, job_id)


def make(store: DirectoryStore, job_id: str) -> Path:
    """Build the job's view from its signed record; returns its folder."""
    view = view_path(store, job_id)
    building = view.with_name(f".partial-{job_id}")
    shutil.rmtree(building, ignore_errors=True)
    for kind in KINDS:
        (building / kind).mkdir(parents=True, mode=0o700)
    for key in sorted(_record(store, job_id)):
        kind, _, name = key[len("data/"):].partition("/")
        if kind not in KINDS or not name or "/" in name:
            continue
        try:
            os.link(store.path(key), building / kind / name)
        except FileNotFoundError:  # cleaned meanwhile: the task says which input is missing
            continue
    shutil.rmtree(view, ignore_errors=True)
    os.replace(building, view)
    return view


def ensure(store: DirectoryStore, job_id: str) -> Path:
    """The job's view, made if missing. One that exists is kept: running containers of the job
    (adopted by a restarted scheduler) have it mounted, and a new folder would not reach them."""
    view = view_path(store, job_id)
    return view if view.is_dir() else make(store, job_id)


def remove(store: DirectoryStore, job_id: str) -> None:
    """Drop the job's view (its links; the data stays for as long as data/ holds it)."""
    shutil.rmtree(view_path(store, job_id), ignore_errors=True)
