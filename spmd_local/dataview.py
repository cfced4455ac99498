"""A job's own view of the uploaded data: what its task containers mount instead of all of ``data/``.

    client: jobs/<job>/uploads.json    the blobs and folder listings the map references,
            jobs/<job>/data.json       and its URL inputs, both signed at submit (spmd.integrity)
    scheduler: views/<job>/sha256/, views/<job>/tree/
                                       hard links to those objects only (no copy), made when
                                       the scheduler starts, removed when it ends
               views/<job>/urls/<digest>/<name>
                                       hard links to the job's fetched URL inputs, added as
                                       they are fetched, before the attempts that read them start
    task container: views/<job>/sha256 at <store>/spmd/data/sha256 (read-only), tree and urls
                    likewise

So a task reads its own job's inputs at their usual paths and no other job's subjects. The
view lives outside every job folder, where no task can write, and a record that changed after
submit (a task may write its job's folder) is refused rather than trusted.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from spmd import data, integrity, layout, remote
from spmd.errors import StoreError
from spmd.scheduling import DirectoryStore

KINDS = ("sha256", "tree", "urls")  # the folders of data/ a job's inputs live in


def view_path(store: DirectoryStore, job_id: str) -> Path:
    return store.path(f"views/{job_id}")


def _signed(store: DirectoryStore, job_id: str, key: str) -> bytes | None:
    """The object as signed at submit; None when the job has none."""
    try:
        raw = store.get(key)
    except KeyError:
        return None
    try:
        intact = integrity.verify(store, job_id, key, raw)
    except integrity.Unsigned:
        intact = False
    if not intact:
        raise StoreError(f"{key} changed after the job was submitted; its tasks get no data")
    return raw


def _record(store: DirectoryStore, job_id: str) -> set[str]:
    """The job's uploads.json as signed at submit (none: the job uploaded nothing)."""
    if _signed(store, job_id, data.uploads_key(job_id)) is None:
        return set()
    return data.uploads_of(store, job_id)


class UrlLinks:
    """Links the job's fetched URL inputs (its signed data.json's) into its view, as they come."""

    def __init__(self, store: DirectoryStore, job_id: str):
        raw = _signed(store, job_id, layout.data_key(job_id))
        refs = data.JobData(json.loads(raw) if raw else None).inputs
        self.cache = store.path(remote.CACHE.rstrip("/"))
        self.view = view_path(store, job_id) / "urls"
        self.waiting = {(ref.digest, ref.name) for ref in refs if not ref.in_place}

    def sync(self) -> None:
        """Link every input fetched since the last call (the scheduler's fetches are done for
        the attempts about to start)."""
        for digest, name in list(self.waiting):
            source, target = self.cache / digest / name, self.view / digest / name
            if not source.exists():
                continue
            if not target.exists():  # (one an adopted container's scheduler linked is kept)
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    building = target.with_name(f".partial-{name}")
                    shutil.rmtree(building, ignore_errors=True)
                    shutil.copytree(source, building, copy_function=os.link)
                    os.rename(building, target)
                else:
                    os.link(source, target)
            self.waiting.discard((digest, name))


def make(store: DirectoryStore, job_id: str) -> Path:
    """Build the job's view from its signed record; returns its folder."""
    view = view_path(store, job_id)
    building = view.with_name(f".partial-{job_id}")
    shutil.rmtree(building, ignore_errors=True)
    for kind in KINDS:
        (building / kind).mkdir(parents=True, mode=0o700)
    for key in sorted(_record(store, job_id)):
        kind, _, name = key[len("data/"):].partition("/")
        if kind not in ("sha256", "tree") or not name or "/" in name:
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
    if not view.is_dir():
        return make(store, job_id)
    for kind in KINDS:  # (a view made by an earlier version had no urls/)
        (view / kind).mkdir(mode=0o700, exist_ok=True)
    return view


def remove(store: DirectoryStore, job_id: str) -> None:
    """Drop the job's view (its links; the data stays for as long as data/ holds it)."""
    shutil.rmtree(view_path(store, job_id), ignore_errors=True)
