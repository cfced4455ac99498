"""spmd clean: remove finished jobs' data from the store, and unused local task images.

    spmd clean JOB                     that job's objects (jobs/JOB/...), its cached results
                                       with them (and its entry under cache/, spmd.reuse), and
                                       the inputs it uploaded (data/sha256/, data/tree/) that
                                       no other job references
    spmd clean --data                  every uploaded and fetched input (data/) that no job still
                                       pending or running references; later maps send again
    spmd clean --older-than 7d         every finished job older than that, copies of URL
                                       inputs fetched before then (data/urls/), and task images
                                       on this machine's Docker engine that spmd built
                                       (label spmd.managed) before then, that no container uses

Nothing else is touched: a job still pending or running is skipped (cancel it first), other
keys of the store and images without spmd's label stay. ``--dry-run`` only prints.
"""
from __future__ import annotations

import re
import sys
import time

from ..batch_queue import PENDING, RUNNING
from ..errors import ConfigError

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MANAGED_LABEL = "spmd.managed"


def parse_age(text: str) -> float:
    """'7d', '12h', '30m', '45s', '2w' as seconds."""
    match = _AGE.match(text)
    if not match:
        raise ConfigError(f"--older-than {text!r} is not an age; write it like 7d, 12h, 30m or 2w",
                          key="older-than")
    return float(match.group(1)) * _UNITS[match.group(2)]


def cmd_clean(args) -> int:
    from .. import layout
    from ..plugins import open_backend
    from ..data import uploads_of
    from ..client.job import load
    from . import settings_of
    from .jobs import list_jobs
    if (args.job_id is None) == (args.older_than is None) and not args.data:
        print("spmd: error: say what to clean: a JOB id, --older-than AGE (e.g. 7d) or --data",
              file=sys.stderr)
        return 2
    backend = open_backend(settings_of(args))
    verb = "would remove" if args.dry_run else "removed"
    if args.data and args.job_id is None and args.older_than is None:
        for line in clean_data(backend, dry_run=args.dry_run):
            print(line)
        return 0
    if args.job_id is not None:
        chosen = [load(backend, args.job_id, watch=False).manifest]  # JobNotFound: exit 2
        cutoff = None
    else:
        cutoff = time.time() - parse_age(args.older_than)
        chosen = [m for m in list_jobs(backend) if m.created < cutoff]
    skipped, uploads, cleaned = 0, set(), set()
    for manifest in chosen:
        counts = load(backend, manifest.job_id, watch=False).status()
        if counts[PENDING] or counts[RUNNING]:
            print(f"skipped {manifest.job_id}: {counts[RUNNING]} tasks running, {counts[PENDING]} "
                  f"pending; spmd cancel {manifest.job_id} first", file=sys.stderr)
            skipped += 1
            continue
        prefix = layout.prefix(manifest.job_id)
        uploads |= uploads_of(backend.store, manifest.job_id)
        cleaned.add(manifest.job_id)
        n = len(list(backend.store.list(prefix))) if args.dry_run else backend.store.delete_prefix(prefix)
        if not args.dry_run:
            from ..integrity import forget
            forget(backend.store, manifest.job_id)
            _remove_view(backend.store, manifest.job_id)
            _remove_secrets(backend.store, manifest.job_id)
        if manifest.reuse_key:  # later reruns no longer find its results
            n += 1
            if not args.dry_run:
                from ..reuse import forget
                forget(backend.store, manifest)
        print(f"{verb} job {manifest.job_id} ({n} objects)")
    if uploads:
        kept = {key for m in list_jobs(backend) if m.job_id not in cleaned
                for key in uploads_of(backend.store, m.job_id)}
        unused = sorted(uploads - kept)
        if not args.dry_run:
            for key in unused:
                backend.store.delete(key)
        print(f"{verb} {len(unused)} uploaded inputs no other job references")
    if args.data:
        for line in clean_data(backend, dry_run=args.dry_run):
            print(line)
    sweep = getattr(backend.store, "remove_partial", None)
    if sweep is not None and not args.dry_run:
        removed = sweep()
        if removed:
            print(f"removed {removed} partial uploads left by writers that died")
    if cutoff is not None:
        for line in clean_fetched(backend.store, cutoff, dry_run=args.dry_run):
            print(line)
        for line in clean_images(cutoff, dry_run=args.dry_run):
            print(line)
    return 1 if skipped and args.job_id is not None else 0


def clean_data(backend, *, dry_run: bool) -> list[str]:
    """Remove every uploaded input (data/sha256/, data/tree/) and fetched URL copy that no job
    still pending or running references: the subjects' data leaves the store."""
    from ..data import BLOBS, TREES, uploads_of
    from ..client.job import load
    from .jobs import list_jobs
    busy: set[str] = set()
    for manifest in list_jobs(backend):
        counts = load(backend, manifest.job_id, watch=False).status()
        if counts[PENDING] or counts[RUNNING]:
            busy |= uploads_of(backend.store, manifest.job_id)
    unused = [k for prefix in (BLOBS, TREES) for k in backend.store.list(prefix) if k not in busy]
    if not dry_run:
        for key in unused:
            backend.store.delete(key)
        for manifest in list_jobs(backend):  # a view's links would keep the data
            if not uploads_of(backend.store, manifest.job_id) & busy:
                _remove_view(backend.store, manifest.job_id)
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {len(unused)} uploaded inputs"]
    if busy:
        lines.append(f"kept {len(busy)} inputs of jobs still running")
    return lines + clean_fetched(backend.store, time.time() + 1, dry_run=dry_run)


def _remove_secrets(store, job_id: str) -> None:
    """Drop a job's secrets a scheduler that died left in a directory store (spmd.secrets)."""
    if callable(getattr(store, "path", None)):
        from .. import secrets
        secrets.remove(store, job_id)


def _remove_view(store, job_id: str) -> None:
    """Drop a local job's view of its inputs (links a scheduler that died left behind)."""
    local = getattr(store, "path", None)
    if callable(local):
        import shutil
        shutil.rmtree(local(f"views/{job_id}"), ignore_errors=True)


def clean_fetched(store, cutoff: float, *, dry_run: bool) -> list[str]:
    """Remove copies of URL inputs fetched into a directory store's cache before cutoff (the
    subjects' data a map read from a bucket); a later map fetches again what it needs."""
    import shutil
    from ..data import cache_root
    root = cache_root(store)
    if root is None or not root.is_dir():
        return []
    gone, size = 0, 0
    for entry in root.iterdir():
        try:
            if not entry.is_dir() or entry.stat().st_mtime >= cutoff:
                continue
            size += sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
            if not dry_run:
                shutil.rmtree(entry)
            gone += 1
        except OSError:
            continue
    if not gone:
        return []
    verb = "would remove" if dry_run else "removed"
    return [f"{verb} {gone} fetched inputs ({size / 1e6:.1f} MB) from {root}"]


def clean_images(cutoff: float, *, dry_run: bool, label: str = MANAGED_LABEL) -> list[str]:
    """Remove task images spmd built before cutoff that no container (running or not) uses.

    ``label`` narrows the images further (tests use a label of their own on a shared engine);
    only images that also carry spmd.managed are ever removed.
    """
    from datetime import datetime
    try:
        from .. import docker_engine
        engine = docker_engine.client()
        images = engine.images.list(filters={"label": [MANAGED_LABEL, label]})
        # sparse: one list call, no inspect per container (one may be gone by then)
        used = {c.attrs.get("ImageID") for c in engine.containers.list(all=True, sparse=True)}
    except Exception as exc:  # no engine here: nothing local to clean
        return [f"# task images not checked: {str(exc).splitlines()[0] if str(exc) else exc!r}"]
    lines = []
    for image in images:
        created = datetime.fromisoformat(image.attrs["Created"][:26].rstrip("Z") + "+00:00").timestamp()
        if image.id in used or created >= cutoff:
            continue
        name = ", ".join(image.tags) or image.short_id
        if not dry_run:
            from docker.errors import APIError
            try:
                engine.images.remove(image.id, noprune=False)
            except APIError as exc:  # a container started meanwhile, or another tag needs it
                lines.append(f"kept image {name}: {exc.explanation or exc}")
                continue
        lines.append(f"{'would remove' if dry_run else 'removed'} image {name}")
    return lines


def add_command(sub) -> None:
    p = sub.add_parser("clean", help="remove finished jobs' data and unused task images",
                       description=__doc__.split("\n\n")[0] + "\n\nNothing else is touched; "
                       "a job still running is skipped.")
    p.add_argument("job_id", nargs="?", metavar="JOB", help="the job to remove")
    p.add_argument("--older-than", metavar="AGE",
                   help="remove every finished job (and unused task image) older than AGE: 7d, 12h")
    p.add_argument("--data", action="store_true",
                   help="remove every uploaded or fetched input no running job references")
    p.add_argument("--dry-run", action="store_true", help="print what would go, remove nothing")
    p.set_defaults(func=cmd_clean)
