"""A warm task container's server: ``python -m spmd.task.serve SOCKET -- COMMAND...``.

It runs as the container's main process and serves one task at a time, for as long as
the scheduler keeps the container:

    scheduler ──{"op": "run", task, attempt, env, log, log_limit}──> fork ──> child: own
        session, output into a pipe the server copies to the attempt's log file keeping its
        last log_limit bytes (spmd.logcap), oom_score_adj 1000 (the kernel's OOM killer picks
        the task, not the server), env of the task ──> spmd.task.worker.run_task in this already
        imported interpreter (COMMAND is spmd's worker), or exec(COMMAND) otherwise
    child ends ──> {"op": "ended", code, oom} to the scheduler and into <log>.exit, so a
        scheduler that restarts finds it; oom = the container cgroup's oom_kill count grew
    {"op": "kill"} ──> SIGKILL to the child's process group (timeout, cancel)
    {"op": "hello"} ──> which task runs now (a resumed scheduler adopts it)
    the child ends, however ──> its staging folder (SPMD_STAGE_DIR: inputs it fetched, its
        output files) is removed once its end is reported, before the next message is read,
        so no subject's data stays for the container's next task
    a task that succeeded ──> the installed modules it imported, over a pipe; the server
        imports them too (SPMD_PRELOAD=0 turns this off), so the next tasks of the job start
        with them loaded, as a pool's worker process would
    idle with no scheduler connected for ORPHANED seconds ──> the server (and container) ends
    SIGTERM (docker stop, an engine shutting down) ──> passed to the running task, which saves
        its checkpoint and exits REQUEUE_EXIT (spmd.task.checkpoint); its end is reported, then the
        server ends. Idle, it ends at once. The container's stop timeout is the task's grace.

The container's limits are one task's, so memory and vcpus hold per task. A child that
dies (os._exit, a segfault) loses only its own task; the server goes on to the next.
Messages are JSON lines on a unix socket in a directory the scheduler bind-mounts.
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback

from .. import logcap, protocol
from . import wire

WORKER = ("-m", "spmd.task.worker")
ORPHANED = 300  # seconds idle with no scheduler connected before the server ends
PRELOAD_MAX = 100  # top-level modules the server imports after its tasks, at most
DRAIN_READS = 1024  # reads of a task's output after it ended (a process it left may print on)
OOM_COUNTERS = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")


def oom_kills() -> int:
    """How many processes the container's memory cgroup has OOM-killed (v1 or v2)."""
    for path in OOM_COUNTERS:
        try:
            with open(path) as counters:
                for line in counters:
                    name, _, value = line.partition(" ")
                    if name == "oom_kill":
                        return int(value)
        except OSError:
            continue
    return 0


def imported_since(before: set[str]) -> list[str]:
    """Top-level modules imported since ``before`` that the server can import by name: from
    files (not the user's modules that travelled with the function), not spmd itself."""
    tops = {name.partition(".")[0] for name in set(sys.modules) - before} - before
    names = []
    for top in sorted(tops):
        module = sys.modules.get(top)
        if module is None or top.startswith(("spmd", "_")):
            continue
        if getattr(module, "__file__", None) and os.path.exists(module.__file__):
            names.append(top)
    return names


def preload(names: list[str]) -> None:
    """Import what a task imported, so that the tasks forked next find it loaded."""
    import importlib
    for name in names[:PRELOAD_MAX]:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 -- a task imports it again itself
            pass


def is_worker(command: list[str]) -> bool:
    return len(command) == 3 and os.path.basename(command[0]).startswith("python") \
        and tuple(command[1:]) == WORKER


class Server:
    """Forks one child per task; reports how each ended."""

    def __init__(self, path: str, command: list[str]):
        self.command = command
        self.worker = is_worker(command)
        self.preloading = os.environ.get(protocol.PRELOAD, "1") != "0"
        self.store = None
        # Listen first: the runner connects and sends the first run while the job loads (its
        # message waits in the socket), instead of finding the socket only after the load.
        if os.path.exists(path):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(2)
        if self.worker:  # import and load once; every child inherits it
            from . import worker
            self.store = worker.open_store(os.environ[protocol.STORE_URL])
            try:
                worker.load_job(self.store, os.environ[protocol.JOB_ID])
            except Exception:  # each task then fails on it, with the traceback in its log
                traceback.print_exc()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.conn: socket.socket | None = None
        self.buffer = b""
        self.child: dict | None = None  # task, attempt, pid, log, oom_kills, pidfd, output
        self.last: dict | None = None  # the last ended record
        self.stopping = False  # told to stop: the task is saving its checkpoint

    def stop(self, signum: int, frame) -> None:
        """SIGTERM: pass it to the task (it saves its checkpoint), end once it has ended."""
        if self.child is None:
            os._exit(128 + signum)
        self.stopping = True
        try:
            os.kill(self.child["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass

    def send(self, message: dict) -> None:
        if self.conn is None:
            return
        try:
            self.conn.sendall(wire.encode(message))
        except OSError:
            self.drop()

    def drop(self) -> None:
        if self.conn is not None:
            self.selector.unregister(self.conn)
            self.conn.close()
            self.conn, self.buffer = None, b""

    def serve(self) -> None:
        alone_since = time.monotonic()
        while True:
            if self.conn is not None or self.child is not None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > ORPHANED:
                return  # no scheduler came back for this container: end it
            for key, _ in self.selector.select(timeout=5):
                if key.data == "accept":
                    conn, _ = self.listener.accept()
                    self.drop()  # a new scheduler replaces the old one
                    self.conn = conn
                    self.selector.register(conn, selectors.EVENT_READ, "conn")
                elif key.data == "conn":
                    self.read()
                elif key.data == "output":
                    self.copy_output()
                elif key.data == "child":
                    self.reap()

    def read(self) -> None:
        data = self.conn.recv(65536) if self.conn else b""
        if not data:
            self.drop()
            return
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.handle(wire.decode(line))

    def handle(self, message: dict) -> None:
        op = message["op"]
        if op == wire.RUN:
            self.run(message)
        elif op == wire.KILL and self.child and self.child["task"] == message["task"]:
            try:
                os.killpg(self.child["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif op == wire.HELLO:
            busy = [self.child["task"], self.child["attempt"]] if self.child else None
            self.send(wire.hello(busy, self.last))

    def run(self, message: dict) -> None:
        if self.child is not None or self.stopping:
            self.send(wire.ended(message["task"], message["attempt"], None, False,
                                 error="the server is stopping" if self.stopping
                                 else "the server is busy"))
            return
        before = oom_kills()
        sys.stdout.flush()
        sys.stderr.flush()
        imports, report = os.pipe() if self.worker and self.preloading else (None, None)
        log = logcap.CappedLog(message["log"], message.get("log_limit") or logcap.DEFAULT_LIMIT)
        stage = tempfile.mkdtemp(prefix="spmd-task-")  # removed at reap, however the task ends
        output, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(output)
            os.close(log.fd)
            if imports is not None:
                os.close(imports)
            os.environ[protocol.STAGE_DIR] = stage
            self.child_main(message, report, writer)  # never returns
        os.close(writer)
        if report is not None:
            os.close(report)
        os.set_blocking(output, False)
        pidfd = os.pidfd_open(pid)
        self.child = {"task": message["task"], "attempt": message["attempt"], "pid": pid,
                      "log": message["log"], "oom_kills": before, "pidfd": pidfd,
                      "imports": imports, "output": output, "capped": log, "stage": stage}
        self.selector.register(output, selectors.EVENT_READ, "output")
        self.selector.register(pidfd, selectors.EVENT_READ, "child")
        self.send(wire.started(message["task"], message["attempt"]))

    def copy_output(self, until_closed: bool = False) -> None:
        """Copy what the task printed into its capped log: one read per event (the server keeps
        answering the scheduler), or once the task has ended, until nothing more comes."""
        child = self.child
        for _ in range(DRAIN_READS if until_closed else 1):
            try:
                data = os.read(child["output"], 1 << 16)
            except BlockingIOError:
                return
            if not data:
                if not until_closed:
                    self.selector.unregister(child["output"])
                    os.close(child["output"])
                    child["output"] = None
                return
            child["capped"].write(data)

    def reap(self) -> None:
        child = self.child
        self.selector.unregister(child["pidfd"])
        os.close(child["pidfd"])
        _, status = os.waitpid(child["pid"], 0)
        try:  # whatever the task left running in its session
            os.killpg(child["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if child["output"] is not None:  # the rest of what it printed, then the log is whole
            self.copy_output(until_closed=True)
            self.selector.unregister(child["output"])
            os.close(child["output"])
        code = os.waitstatus_to_exitcode(status)
        if self.stopping and code == -signal.SIGTERM:  # stopped before it could save anything
            code = protocol.REQUEUE_EXIT
            child["capped"].write(f"{protocol.REQUEUED} (stop signal SIGTERM), no checkpoint "
                                  "saved\n".encode())
        child["capped"].close()
        record = wire.ended(child["task"], child["attempt"], code,
                            code == -signal.SIGKILL and oom_kills() > child["oom_kills"],
                            stopping=self.stopping)
        with open(child["log"] + ".exit.tmp", "w") as exit_file:
            json.dump(record, exit_file)
        os.replace(child["log"] + ".exit.tmp", child["log"] + ".exit")
        self.child, self.last = None, record
        self.send(record)
        # After the end is reported (the removal is off the task's path to the runner), before
        # the server reads its next message: the next task never sees this one's data.
        shutil.rmtree(child["stage"], ignore_errors=True)  # its staged inputs and outputs
        if self.stopping:
            os._exit(0)
        if child["imports"] is not None:
            with os.fdopen(child["imports"], "rb") as pipe:  # the child has ended: no wait
                names = pipe.read()
            if code == 0 and names:
                preload(json.loads(names))

    def child_main(self, message: dict, report: int | None, output: int) -> None:
        code = 1
        before = set(sys.modules)
        try:
            os.setsid()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                with open("/proc/self/oom_score_adj", "w") as adj:
                    adj.write("1000")
            except OSError:
                pass
            os.dup2(output, 1)
            os.dup2(output, 2)
            os.close(output)
            os.environ.update(message["env"])
            if self.worker:
                code = self.run_worker(message)
            else:
                os.execvp(self.command[0], self.command)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                if report is not None and code == 0:
                    os.write(report, json.dumps(imported_since(before)[:PRELOAD_MAX]).encode())
            finally:
                os._exit(code)

    def run_worker(self, message: dict) -> int:
        import logging

        from . import worker
        logging.basicConfig(level=logging.INFO, format="%(asctime)s spmd.task.worker %(message)s")
        task, attempt = worker.task_index(), worker.attempt_number()
        job_id = os.environ[protocol.JOB_ID]
        logging.getLogger("spmd").info("job %s task %d attempt %d", job_id, task, attempt)
        return 0 if worker.run_task(self.store, job_id, task, attempt) else 1


def main(argv: list[str]) -> int:
    """``SOCKET -- COMMAND...``: serve the socket until the container stops."""
    path, command = argv[0], argv[argv.index("--") + 1:]
    # As the container's PID 1 the server would ignore SIGTERM; a stopping engine sends it.
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(128 + signum))
    server = Server(path, command)
    signal.signal(signal.SIGTERM, server.stop)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
