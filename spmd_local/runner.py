"""The local runner: warm task containers on the Docker engine, for spmd's scheduler core.

    start ──> a warm container of the job that is idle, of the attempt's memory limit
              (SPMD_MEMORY) ──> {"op": "run"} on its socket
              none idle ──> a new container: ``python -m spmd.task.serve SOCKET -- COMMAND``
              with ONE task's limits (memory, vcpus), no network unless the job asks
    poll  ──> messages from the containers' servers (spmd.task.serve): started, ended (code, oom)
              a container that dies under its task ──> OOMKilled: "oom"; else "infrastructure"
    kill  ──> {"op": "kill"} (the server SIGKILLs the task's process group)
    idle containers stop after LINGER seconds, or at once when the job has nothing left to
    start (release_idle); all of the job's go when it ends

Each attempt writes its output to jobs/<id>/queue/run/<task>-a<attempt>.log in the store
(bind-mounted at the same path), and the server the attempt's end to <that>.exit, so a
scheduler that restarts adopts running attempts and finds ended ones. When the engine stops
answering, the runner waits up to ENGINE_WAIT seconds for it; attempts whose containers the
engine took down are lost to the infrastructure, and the core retries them.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import selectors
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from spmd import docker_engine, integrity, layout, logcap, protocol, secrets
from spmd.task import wire
from spmd.batch_queue import ArraySpec
from spmd.errors import EngineError
from spmd.scheduling import Adoption, Attempt, DirectoryStore, Outcome, Runner, queue_key
from spmd.folders import private_folder

from . import dataview, gpus

log = logging.getLogger("spmd.scheduler")

LABEL_MANAGED = "spmd.managed"
LABEL_JOB = "spmd.job"
LINGER = 2.0  # seconds an idle warm container waits for another task
ENGINE_WAIT = float(os.environ.get("SPMD_ENGINE_WAIT", "180"))
SERVE_DIR = "/run/spmd-serve"  # where a container sees its socket folder
DOCKER_THREADS = 6
PIDS_LIMIT = 8192  # processes and threads of one task container: a fork bomb stops there


@dataclass
class Slot:
    """One warm container and the attempt it serves."""

    name: str
    socket_path: str
    memory: int = 0  # the container's memory limit, bytes
    launch: concurrent.futures.Future | None = None  # -> container id
    container_id: str | None = None
    conn: socket.socket | None = None
    buffer: bytes = b""
    task: int | None = None
    attempt: int = 0
    env: dict = field(default_factory=dict)
    started: float | None = None  # when the server forked the attempt
    idle_since: float = 0.0
    checked: float = 0.0  # last look at a container not yet answering
    closed: bool = False  # its server closed the connection: the container is ending
    fresh: bool = False  # its server has run no attempt yet


def socket_dir(store_root: str, job_id: str) -> Path:
    """A short host folder for the job's sockets (a unix socket path has at most 107 bytes)."""
    digest = hashlib.sha1(f"{store_root}\0{job_id}".encode()).hexdigest()[:16]
    return Path("/tmp") / f"spmd-serve-{os.getuid()}" / digest


def task_mounts(store: DirectoryStore, job_id: str, after_job: str = "",
                secrets_dir: str = "") -> dict[str, dict]:
    """What a task container of job_id sees of the store, each at its own path: its job's
    folder (read-write: outputs, files, its attempt logs), that job's queue files read-only
    (its spec, which a restarted scheduler trusts), the job's own uploaded inputs read-only
    (its view, spmd_local.dataview, at data/sha256, data/tree and data/urls: fetched URL
    inputs too); for a chained map, the upstream job's manifest, results and files read-only;
    the job's own secrets folder (spmd.secrets) read-only.
    Other jobs' folders and inputs and the result cache are not there."""
    job = store.path(layout.prefix(job_id).rstrip("/"))
    queue = store.path(queue_key(job_id, "").rstrip("/"))
    run = store.path(queue_key(job_id, "run"))
    for folder in (job, queue, run):
        folder.mkdir(parents=True, exist_ok=True)
    view = dataview.ensure(store, job_id)
    mounts = {str(job): {"bind": str(job), "mode": "rw"},
              str(queue): {"bind": str(queue), "mode": "ro"},
              str(run): {"bind": str(run), "mode": "rw"}}
    held = store.in_memory(layout.input_prefix(job_id))  # its inputs, on /dev/shm
    if held is not None:
        mounts[str(held)] = {"bind": str(held), "mode": "ro"}
    for kind in dataview.KINDS:
        mounts[str(view / kind)] = {"bind": str(store.path(f"data/{kind}")), "mode": "ro"}
    if secrets_dir:
        mounts[secrets_dir] = {"bind": secrets_dir, "mode": "ro"}
    if after_job and "/" not in after_job and not after_job.startswith("."):
        # a chained map reads the upstream job's results and files (spmd.client.chain)
        upstream = layout.prefix(after_job)
        for name in ("manifest.json", "output", "files", "reused.pkl"):
            path = store.path(upstream + name)
            if name in ("output", "files"):
                path.mkdir(parents=True, exist_ok=True)
            if path.exists():
                mounts[str(path)] = {"bind": str(path), "mode": "ro"}
    return mounts


class LocalRunner(Runner):
    """Runs a job's attempts in up to ``slots`` warm containers of its image."""

    def __init__(self, store: DirectoryStore, job_id: str, config: dict):
        self.store = store
        self.job_id = job_id
        self.config = config
        self.spec = ArraySpec.from_dict(config["spec"])
        self.engine = docker_engine.client()
        self.pool = concurrent.futures.ThreadPoolExecutor(
            DOCKER_THREADS, thread_name_prefix=f"job-{job_id}-docker")  # its lines: the job's log
        self.slots: dict[str, Slot] = {}
        self.selector = selectors.DefaultSelector()
        self.sockets = socket_dir(str(store.root), job_id)
        private_folder(self.sockets.parent)
        self.sockets.mkdir(mode=0o700, exist_ok=True)
        self.run_dir = store.path(queue_key(job_id, "run"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dataview.ensure(store, job_id)  # from the record signed at submit
        self.url_links = dataview.UrlLinks(store, job_id)
        self.log_limit = int(config.get("log_limit") or logcap.DEFAULT_LIMIT)
        self.count = 0

    # -- the engine -------------------------------------------------------------------

    def engine_call(self, call, *args, **kwargs):
        """Call the engine; when it does not answer, wait (boundedly) for it to come back."""
        from docker.errors import APIError
        try:
            return call(*args, **kwargs)
        except APIError:
            raise  # the engine answered
        except Exception as exc:
            log.warning("the Docker engine did not answer (%s); waiting up to %gs", exc, ENGINE_WAIT)
            self.wait_for_engine()
            return call(*args, **kwargs)

    @staticmethod
    def engine_answers() -> bool:
        """Whether the engine accepts a NEW connection (a stopping engine still answers on
        the connections it has, while its socket is gone)."""
        import docker
        try:
            fresh = docker.from_env(timeout=5)
        except Exception:
            return False
        try:
            return bool(fresh.ping())
        except Exception:
            return False
        finally:
            fresh.close()

    def wait_for_engine(self) -> None:
        deadline = time.monotonic() + ENGINE_WAIT
        while time.monotonic() < deadline:
            if self.engine_answers():
                log.info("the Docker engine answers again")
                return
            time.sleep(1)
        raise EngineError(f"the Docker engine did not come back within {ENGINE_WAIT:g}s")

    # -- capacity ---------------------------------------------------------------------

    def used_by_others(self) -> tuple[float, int]:
        """CPU and memory held by the running spmd containers of other jobs on this engine."""
        cpu, mem = 0.0, 0
        for container in self.engine_call(self.engine.containers.list,
                                          filters={"label": LABEL_MANAGED}, sparse=True):
            labels = container.attrs.get("Labels") or {}
            if labels.get(LABEL_JOB) != self.job_id:
                cpu += float(labels.get("spmd.vcpus", 0))
                mem += int(labels.get("spmd.memory", 0))
        return cpu, mem

    def idle(self, memory: int | None = None) -> int:
        return sum(1 for s in self.slots.values() if s.task is None and s.conn is not None
                   and memory in (None, s.memory))

    def held(self, running: int) -> int:
        return len(self.slots)

    def held_memory(self, running: int) -> int:
        return sum(s.memory for s in self.slots.values())

    # -- starting ---------------------------------------------------------------------

    def start(self, attempts: list[Attempt]) -> dict[int, Outcome]:
        self.url_links.sync()  # the core starts attempts once their URL inputs are fetched
        idle = [s for s in self.slots.values() if s.task is None and s.conn is not None]
        new = []
        for a in attempts:
            slot = next((s for s in idle if s.memory == a.memory), None)
            if slot is not None:
                idle.remove(slot)
                slot.task, slot.attempt, slot.env, slot.started = a.task, a.number, dict(a.env), None
                self.send_run(slot)
            else:
                new.append(self.new_slot(a))
        # Wait until the new containers exist, so other jobs' schedulers count them.
        concurrent.futures.wait([s.launch for s in new])
        failed = {}
        for slot in new:
            try:
                slot.container_id = slot.launch.result()
            except Exception as exc:
                log.error("cannot start container %s: %s", slot.name, exc)
                failed[slot.task] = Outcome(None, f"spmd: the container could not start: {exc}\n",
                                            lost="infrastructure",
                                            reason=f"the container could not start: {exc}")
                del self.slots[slot.name]
        return failed

    def new_slot(self, a: Attempt) -> Slot:
        self.count += 1
        name = f"spmd-{self.job_id}-w{self.count}-{os.getpid()}"
        slot = Slot(name, str(self.sockets / f"w{self.count}-{os.getpid()}.sock"),
                    memory=a.memory, task=a.task, attempt=a.number, env=dict(a.env))
        slot.launch = self.pool.submit(self.launch, slot)
        self.slots[name] = slot
        return slot

    def launch(self, slot: Slot) -> str:
        """Create and start a warm container (on the pool); returns its id. Two engine calls:
        the low-level create, then start (the SDK's ``containers.create`` inspects the new
        container too, a third call whose answer the runner never reads)."""
        spec, res, api = self.spec, self.spec.resources, self.engine.api
        inside = f"{SERVE_DIR}/{os.path.basename(slot.socket_path)}"
        secret_folder = secrets.folder(self.store, self.job_id)  # never a path from spec.json
        mounts = task_mounts(self.store, self.job_id, spec.after_job,
                             str(secret_folder) if secret_folder.is_dir() else "")
        mounts[str(self.sockets)] = {"bind": SERVE_DIR, "mode": "rw"}
        host_config = api.create_host_config(
            binds=mounts, network_mode=None if spec.network else "none",
            nano_cpus=int(res.vcpus * 1e9), mem_limit=slot.memory, memswap_limit=slot.memory,
            pids_limit=PIDS_LIMIT, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            group_add=[str(self.store.root.joinpath("spmd").stat().st_gid)]
            if self.store.shared else None,  # share_with_group: what the task writes is the group's
            device_requests=gpus.device_requests(res.gpus))
        container_id = self.engine_call(
            api.create_container,
            spec.image, ["python3", "-m", "spmd.task.serve", inside, "--", *spec.command],
            name=slot.name, environment={**spec.env, protocol.IMAGE: spec.image},
            labels={LABEL_MANAGED: "1", LABEL_JOB: self.job_id, "spmd.vcpus": str(res.vcpus),
                    "spmd.memory": str(slot.memory), "spmd.socket": slot.socket_path,
                    "spmd.first": f"{slot.task}:{slot.attempt}"},
            volumes=[m["bind"] for m in mounts.values()], host_config=host_config,
            # This process's own user, store and job, never spec.json's: a restarted scheduler
            # takes from the spec only what a task may choose (image, command, env, resources).
            user=f"{os.getuid()}:{os.getgid()}")["Id"]
        try:
            self.engine_call(api.start, container_id)
        except Exception:
            self.remove(container_id)  # a container that never started is not left behind
            raise
        log.info("warm container %s started", slot.name)
        return container_id

    def attempt_log(self, task: int, attempt: int) -> Path:
        return self.run_dir / f"{task}-a{attempt}.log"

    def send_run(self, slot: Slot) -> None:
        path = self.attempt_log(slot.task, slot.attempt)
        path.unlink(missing_ok=True)
        Path(str(path) + ".exit").unlink(missing_ok=True)
        self.send(slot, wire.run(slot.task, slot.attempt, slot.env, str(path), self.log_limit))

    def send(self, slot: Slot, message: dict) -> None:
        try:
            slot.conn.sendall(wire.encode(message))
        except OSError:
            pass  # the container is gone: poll sees its socket close

    # -- watching ---------------------------------------------------------------------

    def poll(self, timeout: float) -> dict[int, Outcome]:
        ended: dict[int, Outcome] = {}
        connecting = [s for s in self.slots.values() if s.conn is None]
        if connecting:
            timeout = min(timeout, 0.02)
        if self.selector.get_map():
            for key, _ in self.selector.select(timeout):
                self.read(key.data, ended)
        else:
            time.sleep(timeout)
        now = time.monotonic()
        for slot in connecting:
            self.connect(slot, ended, now)
        for slot in list(self.slots.values()):
            if slot.task is None and slot.conn is not None and now - slot.idle_since > LINGER:
                self.retire(slot)
        return ended

    def connect(self, slot: Slot, ended: dict, now: float) -> None:
        """Connect to a new container's server once it listens; notice a container that died."""
        if slot.container_id is None:
            return
        if not slot.closed and os.path.exists(slot.socket_path):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(slot.socket_path)
            except OSError:
                conn.close()
            else:
                slot.conn = conn
                self.selector.register(conn, selectors.EVENT_READ, slot)
                if slot.task is not None:
                    self.send_run(slot)
                else:
                    slot.idle_since = now
                return
        if now - slot.checked > 1.0:
            slot.checked = now
            self.check_container(slot, ended)

    def read(self, slot: Slot, ended: dict) -> None:
        try:
            data = slot.conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(slot.conn)
            slot.conn.close()
            slot.conn, slot.closed = None, True
            self.check_container(slot, ended)
            return
        slot.buffer += data
        while b"\n" in slot.buffer:
            line, slot.buffer = slot.buffer.split(b"\n", 1)
            message = wire.decode(line)
            if message.get("task") != slot.task or message.get("attempt") != slot.attempt:
                continue
            if message["op"] == wire.STARTED:
                slot.started = time.monotonic()
            elif message["op"] == wire.ENDED:
                ended[slot.task] = self.outcome(slot.task, slot.attempt, message)
                slot.task, slot.started, slot.idle_since = None, None, time.monotonic()
                if message.get("stopping"):  # its container was told to stop (spmd.task.serve)
                    self.drop(slot)
                    return

    def outcome(self, task: int, attempt: int, record: dict, lost: str | None = None,
                reason: str = "") -> Outcome:
        """The attempt's Outcome from its end record, its log file read (its last log_limit
        bytes at most) and removed."""
        # Its output as it is now is what the client may unpickle (spmd.integrity).
        integrity.sign(self.store, self.job_id, layout.output_key(self.job_id, task))
        path = self.attempt_log(task, attempt)
        try:
            text = logcap.read_kept(path, self.log_limit).decode(errors="replace")
        except OSError:
            text = ""
        path.unlink(missing_ok=True)
        Path(str(path) + ".exit").unlink(missing_ok=True)
        if record.get("error"):
            lost, reason = "infrastructure", record["error"]
        return Outcome(record.get("code"), text, oom=bool(record.get("oom")), lost=lost,
                       reason=reason)

    def check_container(self, slot: Slot, ended: dict) -> None:
        """A container whose server is gone (or never answered): end its attempt and drop it."""
        from docker.errors import NotFound
        try:
            container = self.engine_call(self.engine.containers.get, slot.container_id)
            state = container.attrs["State"]
        except NotFound:
            state = {"Status": "removed"}
        if state.get("Running"):
            return  # still starting
        if slot.task is not None:
            exit_file = Path(str(self.attempt_log(slot.task, slot.attempt)) + ".exit")
            if exit_file.exists():  # it ended just before its container
                record = json.loads(exit_file.read_text())
                ended[slot.task] = self.outcome(slot.task, slot.attempt, record)
            elif state.get("OOMKilled"):
                ended[slot.task] = self.outcome(slot.task, slot.attempt, {"oom": True, "code": None})
            else:
                text = ""
                if state["Status"] != "removed":
                    try:
                        text = container.logs(tail=100).decode(errors="replace")[-4000:]
                    except Exception:  # being removed; its log is not essential
                        pass
                reason = (f"its container ended under it ({state.get('Status')}, exit code "
                          f"{state.get('ExitCode')})")
                outcome = self.outcome(slot.task, slot.attempt, {"code": state.get("ExitCode")},
                                       lost="infrastructure", reason=reason)
                ended[slot.task] = Outcome(outcome.exit_code, outcome.log + text, lost=outcome.lost,
                                           reason=outcome.reason)
        log.info("warm container %s is gone (%s)", slot.name, state.get("Status"))
        self.drop(slot)

    def started_at(self, task: int) -> float | None:
        for slot in self.slots.values():
            if slot.task == task:
                return slot.started
        return None

    def kill(self, task: int) -> None:
        for slot in self.slots.values():
            if slot.task == task:
                if slot.conn is not None:
                    self.send(slot, wire.kill(task))
                elif slot.container_id:  # not answering yet: the container goes
                    self.pool.submit(self.remove, slot.container_id)

    # -- ending -----------------------------------------------------------------------

    def remove(self, container_id: str) -> None:
        from docker.errors import APIError
        try:
            self.engine.api.remove_container(container_id, force=True)  # one call, no inspect
        except Exception as exc:  # gone already, or the engine is down: nothing to keep
            if not isinstance(exc, APIError):
                log.warning("cannot remove container %s: %s", container_id, exc)

    def drop(self, slot: Slot) -> None:
        if slot.conn is not None:
            self.selector.unregister(slot.conn)
            slot.conn.close()
            slot.conn = None
        self.slots.pop(slot.name, None)
        if slot.container_id:
            self.pool.submit(self.remove, slot.container_id)
        Path(slot.socket_path).unlink(missing_ok=True)

    def release_idle(self) -> None:
        for slot in [s for s in self.slots.values() if s.task is None and s.conn is not None]:
            log.info("warm container %s stops: the job has nothing left to start", slot.name)
            self.drop(slot)

    def retire(self, slot: Slot) -> None:
        log.info("warm container %s idle for %gs; stopping it", slot.name, LINGER)
        self.drop(slot)

    def close(self) -> None:
        for slot in list(self.slots.values()):
            self.drop(slot)
        self.pool.shutdown(wait=True)
        shutil.rmtree(self.sockets, ignore_errors=True)
        dataview.remove(self.store, self.job_id)

    # -- resuming ---------------------------------------------------------------------

    def adopt(self, running: list[Attempt], maybe: list[Attempt] = ()) -> Adoption:
        """Take over the containers of a scheduler that died: ask each server what it runs."""
        wanted = {a.task: a.number for a in [*running, *maybe]}
        envs = {a.task: a.env for a in [*running, *maybe]}
        found: set[int] = set()
        ended: dict[int, Outcome] = {}
        for container in self.engine_call(self.engine.containers.list, all=True,
                                          filters={"label": f"{LABEL_JOB}={self.job_id}"}):
            path = container.labels.get("spmd.socket", "")
            slot = Slot(container.name, path, container_id=container.id,
                        memory=int(container.labels.get("spmd.memory") or self.spec.resources.memory))
            if container.status != "running":
                self.drop(slot)
                continue
            self.slots[slot.name] = slot
            answered = self.hello(slot)
            log.info("adopting %s: answered %s, runs %s", slot.name, answered,
                     slot.task if answered else container.labels.get("spmd.first"))
            if not answered or (slot.task is None and slot.fresh):
                # Its server is starting, or waits for the attempt the container was made for.
                task, attempt = (int(n) for n in container.labels.get("spmd.first", "-1:0").split(":"))
                if wanted.get(task) != attempt:
                    if not answered:
                        self.drop(slot)
                    continue
                slot.task, slot.attempt = task, attempt
                slot.env = dict(envs[task])
                if answered:
                    self.send_run(slot)
                found.add(task)
            elif slot.task is not None and wanted.get(slot.task) == slot.attempt:
                found.add(slot.task)
                slot.started = time.monotonic()  # the timeout restarts with the adoption
            elif slot.task is not None:  # not an attempt the core knows: stop it
                self.send(slot, wire.kill(slot.task))
        maybe_tasks = {a.task for a in maybe}
        for task, attempt in wanted.items():
            if task in found:
                continue
            exit_file = Path(str(self.attempt_log(task, attempt)) + ".exit")
            if exit_file.exists():
                ended[task] = self.outcome(task, attempt, json.loads(exit_file.read_text()))
            elif task not in maybe_tasks:
                ended[task] = self.outcome(task, attempt, {"code": None}, lost="infrastructure",
                                           reason="its container was lost with the scheduler")
        return Adoption(ended, found & maybe_tasks)

    def hello(self, slot: Slot) -> bool:
        """Connect to a server and learn the attempt it runs; False if it does not answer."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(5)
        try:
            conn.connect(slot.socket_path)
            conn.sendall(wire.encode(wire.hello()))
            data = b""
            while b"\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    raise OSError("closed")
                data += chunk
        except OSError:
            conn.close()
            return False
        line, slot.buffer = data.split(b"\n", 1)
        hello = json.loads(line)
        busy, slot.fresh = hello.get("busy"), hello.get("last") is None
        conn.settimeout(None)
        slot.conn = conn
        self.selector.register(conn, selectors.EVENT_READ, slot)
        if busy:
            slot.task, slot.attempt = busy
        else:
            slot.idle_since = time.monotonic()
        return True
