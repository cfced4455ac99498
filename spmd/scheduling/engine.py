"""The engine kept alive: a job's detached scheduler process that also takes the next jobs
of the same user, backend, Python, spmd code and environment, while its own job runs and
for a while after, so those jobs pay no process start and no imports.

    client (SchedulerQueue.submit, or replacing a dead scheduler)
        connect <private folder>/engine-<digest>.sock ── {"root", "job"} ──> the engine
            it takes the job's lock, answers {"pid": N}, and runs the job in a thread
        no socket, no answer, or refused ──> start ``python -m <scheduler> ROOT JOB`` as before
    scheduler process: takes its job's lock ──> the engine lock is free: listen, run its job
        and every job handed over in threads, until none has run for LINGER seconds
                                          ──> another engine listens: run its job alone

Everything a job needs to resume stays where it was (the job's lock, state.json, the runner's
adopt), so a killed engine loses nothing: each of its jobs gets a new scheduler. The folder
is this user's alone (0700): no one else can hand it a job.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from spmd.errors import EngineError
from spmd.folders import private_folder

log = logging.getLogger("spmd.scheduler")

#: seconds an idle engine waits for the next job (SPMD_ENGINE_LINGER; 0 turns it off)
LINGER = 120.0
#: set when the engine is told to stop: each job's scheduler stops at its next tick
STOPPING = threading.Event()
#: seconds a client waits for an engine's answer before starting a process of its own
ANSWER_WAIT = 3.0
#: bytes of an engine's own log before it starts another (one older log is kept)
LOG_LIMIT = 4 * 2**20
#: variables that differ between two shells of one user without changing what a job does
VOLATILE = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "TERM", "PS1",
                      "PROMPT_COMMAND", "HISTFILE", "SSH_TTY", "WINDOWID", "TMUX_PANE"})


def linger_seconds() -> float:
    try:
        return float(os.environ.get("SPMD_ENGINE_LINGER", LINGER))
    except ValueError:
        return LINGER


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


def serve(module: str, first: tuple[str, str, object],
          run: Callable[[str, str, object, bool], int],
          take: Callable[[str, str], object | None]) -> int:
    """Run the process's first job (its lock held), as the engine when none listens yet.
    ``take(root, job)`` takes a job's lock (None: another scheduler holds it, or it is
    done); ``run(root, job, lock, handed)`` runs a job, returning the scheduler's exit code."""
    root, job_id, lock = first
    seconds = linger_seconds()
    path = guard = None
    if seconds > 0 and module:
        try:
            path = address(module)
            guard = _listener_lock(path)
        except (OSError, EngineError) as exc:
            log.info("no engine: %s", exc)
    if guard is None:
        return run(root, job_id, lock, False)
    _quiet(Path(str(path) + ".log"))
    jobs: list[threading.Thread] = []
    try:
        _start(jobs, run, root, job_id, lock)
        _listen(path, seconds, jobs, run, take)
    except BaseException:
        STOPPING.set()  # SIGTERM: every job's scheduler stops, marking what it did not finish
        raise
    finally:
        for thread in jobs:
            thread.join()
        guard.close()
    return 0


def _listener_lock(path: Path):
    """The lock of the one engine that listens on ``path``; None when another holds it."""
    guard = open(os.open(str(path) + ".lock", os.O_WRONLY | os.O_CREAT, 0o600), "a")
    try:
        fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        guard.close()
        return None
    return guard


def _start(jobs: list, run, root: str, job_id: str, lock) -> None:
    thread = threading.Thread(target=run, args=(root, job_id, lock, True), name=f"job-{job_id}")
    thread.start()
    jobs.append(thread)


def _listen(path: Path, seconds: float, jobs: list, run, take) -> None:
    """Take jobs on the socket while any runs, and until none has run for ``seconds``."""
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        listener.listen(16)
        idle_since = None
        while True:
            jobs[:] = [t for t in jobs if t.is_alive()]
            now = time.monotonic()
            if jobs:
                idle_since = None
            elif idle_since is None:
                idle_since = now
                log.info("idle: the engine waits %gs for the next job on %s", seconds, path)
            elif now - idle_since >= seconds:
                return
            listener.settimeout(0.5 if jobs else max(0.01, seconds - (now - idle_since)))
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            with conn:
                taken = _answer(conn, take)
            if taken is not None:
                _start(jobs, run, *taken)
    finally:
        listener.close()
        path.unlink(missing_ok=True)


def _answer(conn: socket.socket, take) -> tuple[str, str, object] | None:
    """Read a hand-over; take the job's lock, then answer with this pid (or a refusal)."""
    conn.settimeout(ANSWER_WAIT)
    try:
        message = json.loads(conn.makefile("rb").readline() or b"{}")
        root, job_id = str(message["root"]), str(message["job"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    lock = take(root, job_id)
    answer = {"pid": os.getpid()} if lock is not None else {"refused": "the job has a scheduler"}
    try:
        conn.sendall(json.dumps(answer).encode() + b"\n")
    except OSError:
        pass  # the client gave up waiting; the job's lock is this engine's all the same
    return None if lock is None else (root, job_id, lock)


def _quiet(log_path: Path) -> None:
    """An idle engine writes to a log of its own, not to the log of the job it came from;
    past LOG_LIMIT bytes the log becomes ``<log>.1`` and a new one starts."""
    try:
        if log_path.stat().st_size > LOG_LIMIT:
            os.replace(log_path, str(log_path) + ".1")
    except FileNotFoundError:
        pass
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
