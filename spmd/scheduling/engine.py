"""The engine kept alive: a job's detached scheduler process that, once its job has ended,
waits a while for the next job of the same user, backend, Python, spmd code and
environment, so that job pays no process start and no imports.

    client (SchedulerQueue.submit, or replacing a dead scheduler)
        connect <private folder>/engine-<digest>.sock ── {"root", "job"} ──> idle engine
            the engine takes the job's lock, then answers {"pid": N}: nothing is started
        no socket, no answer, or refused ──> start ``python -m <scheduler> ROOT JOB`` as before
    scheduler process: run its job ──> idle: listen up to LINGER seconds ──> the next job ...

One engine listens per digest at a time (``engine-<digest>.lock``); while it runs a job it
listens no more, so another job's scheduler may become the listener, and a second job
submitted meanwhile gets a process of its own. Everything a job needs to resume stays where
it was (the job's lock, state.json, the runner's adopt), so a killed engine loses nothing.
The folder is this user's alone (0700): no one else can hand it a job.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Callable

from spmd.errors import EngineError

log = logging.getLogger("spmd.scheduler")

#: seconds an idle engine waits for the next job (SPMD_ENGINE_LINGER; 0 turns it off)
LINGER = 120.0
#: seconds a client waits for an engine's answer before starting a process of its own
ANSWER_WAIT = 3.0
#: variables that differ between two shells of one user without changing what a job does
VOLATILE = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "TERM", "PS1",
                      "PROMPT_COMMAND", "HISTFILE", "SSH_TTY", "WINDOWID", "TMUX_PANE"})


def linger_seconds() -> float:
    try:
        return float(os.environ.get("SPMD_ENGINE_LINGER", LINGER))
    except ValueError:
        return LINGER


def private_folder(folder: Path) -> Path:
    """Make the user's private folder, or check one that exists: a folder of this user's
    that no one else may enter. Another user's (made first, to read what is sent there) is
    refused."""
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise EngineError(f"{folder} is not a folder of this user's (owner uid {st.st_uid}); "
                          "another user may have made it to read tasks' messages: remove it "
                          "(or ask an admin to), then run again")
    if st.st_mode & 0o077:
        os.chmod(folder, 0o700)
    return folder


def _code_stamp(module: str) -> str:
    """What identifies the code an engine runs: every source file of spmd and of the
    scheduler's package, by path, size and modification time (a few ms)."""
    import spmd
    roots = {Path(spmd.__file__).parent}
    top = sys.modules.get(module.split(".")[0])
    if top is not None and getattr(top, "__file__", None):
        roots.add(Path(top.__file__).parent)
    digest = hashlib.sha1()
    for root in sorted(roots):
        for path in sorted(root.rglob("*.py")):
            st = path.stat()
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def address(module: str) -> Path:
    """The engine socket for this user, backend, Python, code and environment."""
    env = sorted((k, v) for k, v in os.environ.items() if k not in VOLATILE)
    digest = hashlib.sha1(json.dumps([module, sys.executable, _code_stamp(module), env])
                          .encode()).hexdigest()[:16]
    folder = private_folder(Path("/tmp") / f"spmd-engine-{os.getuid()}")
    return folder / f"engine-{digest}.sock"


def hand_over(module: str, root: str, job_id: str) -> int | None:
    """Give the job to an idle engine; its pid once it holds the job's lock, else None."""
    try:
        path = address(module)
    except (OSError, EngineError):
        return None
    if not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(ANSWER_WAIT)
            conn.connect(str(path))
            conn.sendall(json.dumps({"root": root, "job": job_id}).encode() + b"\n")
            answer = json.loads(conn.makefile("rb").readline() or b"{}")
    except (OSError, ValueError):
        return None
    pid = answer.get("pid")
    return pid if isinstance(pid, int) else None


def linger(module: str, run: Callable[[str, str, object], int],
           take: Callable[[str, str], object | None]) -> None:
    """Serve jobs handed over on the engine socket until none comes for LINGER seconds.
    ``take(root, job)`` takes a job's lock (None: another scheduler holds it, or it is
    done); ``run(root, job, lock)`` runs it and returns the scheduler's exit code."""
    seconds = linger_seconds()
    if seconds <= 0:
        return
    try:
        path = address(module)
    except (OSError, EngineError) as exc:
        log.info("no engine: %s", exc)
        return
    while True:
        guard = open(os.open(str(path) + ".lock", os.O_WRONLY | os.O_CREAT, 0o600), "a")
        try:
            fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another engine of the same kind listens
        _quiet(Path(str(path) + ".log"))
        job = _next_job(path, seconds, take)
        guard.close()  # another scheduler may listen while this one runs the job
        if job is None:
            return
        root, job_id, lock = job
        if run(root, job_id, lock) != 0:
            return  # a failed job ends its engine: a fresh process serves the next one


def _next_job(path: Path, seconds: float, take) -> tuple[str, str, object] | None:
    """Listen until a job is handed over and its lock taken, or ``seconds`` pass."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        listener.listen(8)
        deadline = time.monotonic() + seconds
        log.info("idle: the engine waits %gs for the next job on %s", seconds, path)
        while (left := deadline - time.monotonic()) > 0:
            listener.settimeout(left)
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                break
            with conn:
                conn.settimeout(ANSWER_WAIT)
                try:
                    message = json.loads(conn.makefile("rb").readline() or b"{}")
                    root, job_id = str(message["root"]), str(message["job"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                lock = take(root, job_id)
                try:
                    conn.sendall(json.dumps({"pid": os.getpid()} if lock is not None
                                            else {"refused": "the job has a scheduler"}).encode() + b"\n")
                except OSError:
                    pass  # the client gave up waiting; the job's lock is ours all the same
                if lock is not None:
                    return root, job_id, lock
        return None
    finally:
        listener.close()
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _quiet(log_path: Path) -> None:
    """An idle engine writes to a log of its own, not to the log of the job it came from."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
