"""``spmd.checkpoint_dir()``: a task's folder that survives being told to stop.

    attempt n   checkpoint_dir() ──> a folder on the task's local disk, filled from
                jobs/<id>/checkpoints/<task>.tar when an earlier attempt saved one
    told to stop (SIGTERM: docker stop, Batch/ECS before a spot stop, Slurm preemption;
                  SIGUSR1: Slurm's --signal warning before the time limit)
                ──> StopRequested raised in the task's main thread ──> the folder as a tar
                under the job's prefix ──> "spmd: requeued (<why>), checkpoint <size> saved"
                in the log ──> exit protocol.REQUEUE_EXIT: the queue runs the task again,
                charged to infra_retries (spmd.attempts), never to retries
    attempt n+1 checkpoint_dir() ──> the same folder contents; a task that succeeds deletes
                its checkpoint

Outside a task (plain Python, a notebook) ``checkpoint_dir()`` is a temporary folder of the
process, so the same code runs unchanged. Files should be written whole (to a temporary
name, then renamed): the stop may come while one is being written.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import layout, protocol
from ..errors import ObjectNotFound
from ..stores.object_store import ObjectStore
from ..units import format_bytes

log = logging.getLogger("spmd")

#: why a task was told to stop, by the signal that told it
SIGNALS = {signal.SIGTERM: "stop signal SIGTERM", signal.SIGUSR1: "walltime warning"}


class StopRequested(BaseException):
    """Raised in a task's main thread when it is told to stop; a BaseException, so the user's
    ``except Exception`` does not swallow it (as KeyboardInterrupt)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


@dataclass
class _Task:
    """The checkpoint of the task a thread runs."""

    store: ObjectStore
    job_id: str
    task: int
    folder: Path | None = None  # made on the first checkpoint_dir() call of the attempt
    restored: bool = False      # an earlier attempt's checkpoint was found

    @property
    def key(self) -> str:
        return layout.checkpoint_key(self.job_id, self.task)


_current = threading.local()
_main: _Task | None = None  # the task of the process's main thread, seen from its other threads
_outside: Path | None = None
_lock = threading.Lock()


def _task() -> _Task | None:
    """The task this thread runs: its own (the in-memory test queue runs tasks on threads),
    else the main thread's (a task's own thread pool)."""
    return getattr(_current, "task", None) or _main


def checkpoint_dir() -> Path:
    """The folder whose contents are saved when the task is told to stop and restored into it
    at the start of its next attempt; outside a task, a temporary folder of this process."""
    global _outside
    task = _task()
    if task is None:
        with _lock:
            if _outside is None or not _outside.is_dir():
                _outside = Path(tempfile.mkdtemp(prefix="spmd-checkpoint-"))
            return _outside
    with _lock:  # the task's threads may ask at once: one folder, restored once
        if task.folder is None:
            folder = _make_folder(task.task)
            task.restored = restore(task.store, task.key, folder)
            task.folder = folder
    return task.folder


def _make_folder(task: int) -> Path:
    """On the task's local disk: in its staging folder where it has one (a warm container's,
    removed when the task ends), else a temporary folder (removed when ``begin``'s undo runs)."""
    stage = os.environ.get(protocol.STAGE_DIR)
    if stage and os.path.isdir(stage):
        folder = Path(stage) / "checkpoint"
        folder.mkdir(exist_ok=True)
        return folder
    return Path(tempfile.mkdtemp(prefix=f"spmd-checkpoint-{task}-"))


def restore(store: ObjectStore, key: str, folder: Path) -> bool:
    """Unpack the checkpoint under key into folder; False when there is none."""
    archive = folder.parent / f".{folder.name}.tar"
    try:
        store.get_file(key, archive)
    except ObjectNotFound:
        return False
    started = time.monotonic()
    try:
        with tarfile.open(archive) as tar:
            _extract(tar, folder)
    except tarfile.TarError as exc:  # damaged: this attempt starts over rather than never runs
        log.warning("the checkpoint %s cannot be read (%s); starting from an empty folder",
                    key, exc)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        return False
    finally:
        archive.unlink(missing_ok=True)
    log.info("checkpoint restored from %s in %.2fs", key, time.monotonic() - started)
    return True


def _extract(tar: tarfile.TarFile, folder: Path) -> None:
    """Regular files and folders only, each inside folder (no links, devices or ``..``)."""
    root = folder.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if member.name.startswith("/") or (target != root and root not in target.parents):
            raise ValueError(f"checkpoint member {member.name!r} points outside its folder")
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.isfile():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            os.utime(target, (member.mtime, member.mtime))


def save(store: ObjectStore, key: str, folder: Path) -> int:
    """The folder's files as one tar under key (replacing an older one); its size in bytes."""
    fd, archive = tempfile.mkstemp(prefix=".spmd-checkpoint-", suffix=".tar", dir=folder.parent)
    os.close(fd)
    try:
        with tarfile.open(archive, "w") as tar:
            for path in sorted(folder.rglob("*")):
                if path.is_dir() and not path.is_symlink():
                    tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
                elif path.is_file():  # a link's target is saved as a file
                    with open(path, "rb") as data:
                        tar.addfile(_info(tar, path, folder), data)
        size = os.path.getsize(archive)
        store.put_file(key, archive)
        return size
    finally:
        os.unlink(archive)


def _info(tar: tarfile.TarFile, path: Path, folder: Path) -> tarfile.TarInfo:
    info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
    if not info.isfile():  # a symbolic link to a file: store what it points to
        stat = path.stat()
        info.type, info.linkname = tarfile.REGTYPE, ""
        info.size, info.mtime = stat.st_size, stat.st_mtime
    return info


# -- the worker's side ----------------------------------------------------------------------

def begin(store: ObjectStore, job_id: str, task: int) -> Callable[[], None]:
    """Make checkpoint_dir() the task's in this thread and, in the main thread, turn the stop
    signals into StopRequested; returns what undoes both."""
    global _main
    _current.task = _Task(store, job_id, task)
    previous = {}
    main = threading.current_thread() is threading.main_thread()
    if main:
        _main = _current.task
        for number in SIGNALS:
            previous[number] = signal.signal(number, _stop)

    def undo() -> None:
        global _main
        for number, handler in previous.items():
            signal.signal(number, handler)
        task_state = getattr(_current, "task", None)
        _current.task = None
        if main:
            _main = None
        if task_state is not None and task_state.folder is not None \
                and not os.environ.get(protocol.STAGE_DIR):
            shutil.rmtree(task_state.folder, ignore_errors=True)
    return undo


def _stop(signum: int, frame) -> None:
    for number in SIGNALS:  # a second signal while saving must not interrupt the save
        signal.signal(number, signal.SIG_IGN)
    raise StopRequested(SIGNALS.get(signum, f"signal {signum}"))


def on_stop(why: str) -> str:
    """Save the task's checkpoint, if it made one this attempt; the line its log ends with,
    which says why it stopped and what was saved (the report's reason for the attempt)."""
    task = _task()
    if task is None or task.folder is None:
        return f"spmd: requeued ({why}), no checkpoint saved"
    started = time.monotonic()
    try:
        size = save(task.store, task.key, task.folder)
    except Exception as exc:  # the attempt still ends as a requeue: the next one starts over
        log.exception("cannot save the checkpoint")
        return f"spmd: requeued ({why}), checkpoint not saved: {type(exc).__name__}: {exc}"
    return (f"spmd: requeued ({why}), checkpoint {format_bytes(size)} saved "
            f"in {time.monotonic() - started:.1f}s")


def on_success() -> None:
    """The task's calls all succeeded: the checkpoint an earlier attempt saved is not needed."""
    task = _task()
    if task is not None and task.restored:
        try:
            task.store.delete(task.key)
        except Exception:  # only space: spmd clean removes the job's prefix anyway
            log.warning("cannot delete the checkpoint %s", task.key)
