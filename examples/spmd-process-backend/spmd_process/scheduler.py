"""The process runner: ``python -m spmd_process.scheduler ROOT JOB`` runs spmd's scheduler core
with tasks as child processes of this machine.

    start  ──> ``python -m spmd_process.launch --memory BYTES -- COMMAND`` in its own session
               (BYTES: the attempt's SPMD_MEMORY, larger after an attempt killed for memory)
               (killing its process group kills whatever it started), in a scratch directory
               removed when it ends, output through a pipe to task.log there, which keeps its
               last log_limit bytes (``spmd.logcap``) however much the task prints
    poll   ──> exited children (their code, their log); a child over its memory ──> killed, "oom"
    kill   ──> SIGKILL to the child's process group
    usage  ──> each scheduler publishes what its running tasks hold in ROOT/.process-usage/

The environment is the one the local backend gives a container: the spec's env
(SPMD_STORE_URL, SPMD_JOB_ID), AWS_BATCH_JOB_ARRAY_INDEX, SPMD_ATTEMPT, SPMD_IMAGE. Retries,
timeouts, cancel, the state file and the logs are the core's (``spmd.scheduling``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from spmd import logcap, protocol
from spmd.batch_queue import ArraySpec
from spmd.scheduling import Attempt, DirectoryStore, Outcome, Runner, scheduler_main

from .launch import OOM_EXIT
from .queue import alive

log = logging.getLogger("spmd.process")

PYTHONS = ("python", "python3", f"python3.{sys.version_info.minor}")


@dataclass
class Child:
    process: subprocess.Popen
    folder: str  # scratch: work/ is the task's cwd, task.log its output
    started: float
    memory: int  # the attempt's limit, bytes
    over_memory: bool = False
    killed: bool = False  # by the scheduler (timeout, cancel), not by the kernel
    copier: threading.Thread | None = None  # the task's output, from its pipe into task.log


class ProcessRunner(Runner):
    """Each attempt is a child process; capacity is shared through usage files."""

    lock_name = ".process-usage/.lock"

    def __init__(self, store: DirectoryStore, job_id: str, config: dict):
        self.job_id = job_id
        self.spec = ArraySpec.from_dict(config["spec"])
        self.memory = self.spec.resources.memory
        self.vcpus = self.spec.resources.vcpus
        self.python = config.get("python") or sys.executable
        self.log_limit = int(config.get("log_limit") or logcap.DEFAULT_LIMIT)
        self.children: dict[int, Child] = {}
        self.usage_dir = store.root / ".process-usage"
        self.usage_dir.mkdir(exist_ok=True)

    def command(self) -> list[str]:
        """The spec's command, its Python being this environment's (there is no image)."""
        command = list(self.spec.command)
        if command and command[0] in PYTHONS:
            command[0] = self.python
        return command

    def start(self, attempts: list[Attempt]) -> dict[int, Outcome]:
        failed = {}
        for a in attempts:
            task, attempt = a.task, a.number
            folder = tempfile.mkdtemp(prefix=f"spmd-{self.job_id}-{task}-a{attempt}-")
            os.mkdir(os.path.join(folder, "work"))
            # what this process inherited of another task would mislead the worker
            child_env = protocol.clean_env(os.environ)
            child_env.update(a.env)
            memory = a.memory
            argv = [self.python, "-m", "spmd_process.launch", "--memory", str(memory),
                    "--", *self.command()]
            try:
                process = subprocess.Popen(argv, cwd=os.path.join(folder, "work"), env=child_env,
                                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           close_fds=True)
            except OSError as exc:
                shutil.rmtree(folder, ignore_errors=True)
                failed[task] = Outcome(None, f"spmd: the process could not start: {exc}\n",
                                       reason=f"the process could not start: {exc}")
                continue
            copier = threading.Thread(target=_copy, daemon=True, args=(
                process.stdout, logcap.CappedLog(os.path.join(folder, "task.log"), self.log_limit)))
            copier.start()
            self.children[task] = Child(process, folder, time.monotonic(), memory, copier=copier)
            log.info("task %d attempt %d started as pid %d", task, attempt, process.pid)
        self.publish_usage()
        return failed

    def poll(self, timeout: float) -> dict[int, Outcome]:
        time.sleep(min(timeout, 0.05))
        ended = {}
        for task, child in list(self.children.items()):
            code = child.process.poll()
            if code is None:
                if not child.over_memory and _rss(child.process.pid) > child.memory:
                    log.info("task %d is over its memory limit", task)
                    child.over_memory = True
                    _kill(child.process.pid)
                continue
            del self.children[task]
            _kill(child.process.pid)  # whatever the task started and left behind
            child.copier.join(timeout=5)  # the pipe ends with the last process holding it
            text = logcap.read_kept(Path(child.folder, "task.log"), self.log_limit).decode(
                errors="replace")
            shutil.rmtree(child.folder, ignore_errors=True)
            # SIGKILL that the scheduler did not send: the kernel's out-of-memory killer.
            oom = child.over_memory or code == OOM_EXIT or \
                (code == -signal.SIGKILL and not child.killed)
            ended[task] = Outcome(code, text, oom=oom)
        if ended:
            self.publish_usage()
        return ended

    def started_at(self, task: int) -> float | None:
        child = self.children.get(task)
        return child.started if child else None

    def kill(self, task: int) -> None:
        child = self.children.get(task)
        if child:
            child.killed = True
            _kill(child.process.pid)

    def publish_usage(self) -> None:
        n = len(self.children)
        usage = {"pid": os.getpid(), "vcpus": self.vcpus * n,
                 "memory": sum(child.memory for child in self.children.values())}
        path = self.usage_dir / f"{self.job_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(usage))
        os.replace(tmp, path)

    def used_by_others(self) -> tuple[float, int]:
        cpu, mem = 0.0, 0
        for path in self.usage_dir.glob("*.json"):
            if path.stem == self.job_id:
                continue
            try:
                usage = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if alive(usage.get("pid", 0)):
                cpu += usage["vcpus"]
                mem += usage["memory"]
        return cpu, mem

    def close(self) -> None:
        for child in self.children.values():
            _kill(child.process.pid)
        (self.usage_dir / f"{self.job_id}.json").unlink(missing_ok=True)


def _copy(pipe, log: logcap.CappedLog) -> None:
    """Copy a task's output into its capped log until the pipe ends; one that cannot be written
    (a full disk) is still drained, so the task never blocks on a full pipe."""
    try:
        while chunk := pipe.read1(1 << 16):
            try:
                log.write(chunk)
            except OSError:
                pass
    finally:
        log.close()
        pipe.close()


def _kill(pid: int) -> None:
    """SIGKILL the task's whole process group (the task is its session's leader)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _rss(pid: int) -> int:
    """Resident memory of a process in bytes (0 when unknown: no /proc, or it just ended)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(scheduler_main(sys.argv[1:], ProcessRunner, "process"))
