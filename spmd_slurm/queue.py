"""SlurmQueue: an ArraySpec becomes one or more ``sbatch --array`` jobs on the cluster.

    submit  ──> arrays of at most MaxArraySize tasks (read once from ``scontrol show config``)
            ──> jobs/<id>/slurm/array-<offset>.sh (kept for reading) ──> sbatch, one per array
                (max_parallel, a chained map: each array's --dependency, depend.py)
            ──> handle ``{"job": id, "arrays": [[slurm id, offset, n], ...]}``
    states  ──> ONE ``squeue --array --states=all`` for all arrays + ONE listing of the marks
            (+ ONE ``sacct`` for tasks squeue forgot, where the cluster keeps accounting)
    cancel  ──> ONE ``scancel`` of all arrays
    cancel_pending (a spent failure budget) ──> ONE ``scancel --state=PENDING`` of all arrays
    logs    ──> jobs/<id>/slurm/<slurm id>_<index>.out, read through the store

The batch script (``script.py``) leaves empty marker files of each attempt's start and end;
Slurm's own state says what the script could not see: cancelled, killed at Slurm's time
limit, out of memory, node failure, preemption.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from spmd import layout
from spmd.batch_queue import (
    CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, TERMINAL, ArraySpec, BatchQueue, TaskStatus,
)
from spmd.errors import ConfigError, ObjectNotFound, ResourceError
from spmd.protocol import SECRETS_DIR
from spmd.secrets import remove as remove_secrets, write as write_secrets
from spmd.units import format_bytes

from . import depend, paths, poller, runtimes, script, slurm
from .store import DirectoryStore

PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                  "CONFIGURING", "RESIZING"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
#: Slurm's end states that the batch script never saw, as TaskStatus.lost kinds.
LOST = {"OUT_OF_MEMORY": "oom", "TIMEOUT": "timeout", "DEADLINE": "timeout",
        "NODE_FAIL": "infrastructure", "PREEMPTED": "infrastructure", "BOOT_FAIL": "infrastructure",
        "CANCELLED": "cancelled"}


def slurm_key(job_id: str, name: str) -> str:
    return f"{layout.prefix(job_id)}slurm/{name}"


class SlurmQueue(BatchQueue):
    """Runs arrays with sbatch; states from squeue and the scripts' marks on the shared store."""

    caps_parallel = True  # --array=...%N, each array after the one before (depend.py)
    takes_secrets = True  # a private folder on shared_dir, removed once every task has ended

    def __init__(self, store: DirectoryStore, options: script.Options,
                 array_size: int | None = None, poll_interval: float = 1.0):
        self.store = store
        self.options = options
        self._array_size = array_size
        self.poll_interval = poll_interval
        self._config: dict[str, str] | None = None
        self._partitions: dict[str, slurm.Partition] | None = None
        self._marks_seen: dict[str, dict] = {}

    def cluster(self) -> dict[str, str]:
        """``scontrol show config``, asked once per queue."""
        if self._config is None:
            self._config = slurm.config()
        return self._config

    def partitions(self) -> dict[str, slurm.Partition]:
        """The partitions this queue submits to (``sinfo``, asked once per queue): those named
        by ``partition``, or the default one. ConfigError naming one Slurm does not know."""
        if self._partitions is None:
            known = slurm.partitions()
            if self.options.partition:
                names = self.options.partition.split(",")
                unknown = [n for n in names if n not in known]
                if unknown:
                    raise ConfigError(
                        f"Slurm knows no partition {', '.join(map(repr, unknown))}; it has "
                        f"{', '.join(sorted(known)) or 'none'} (sinfo -s): choose one of them, or "
                        "leave partition out for the cluster's default", key="partition")
                self._partitions = {n: known[n] for n in names}
            else:
                self._partitions = {n: p for n, p in known.items() if p.default}
        return self._partitions

    def nodes(self) -> list[slurm.Node]:
        """The nodes of the partitions this queue submits to."""
        return list({n.name: n for p in self.partitions().values() for n in p.nodes}.values())

    def check_time(self, limit: str | None, what: str) -> None:
        """ResourceError when a time limit is above every partition's MaxTime."""
        if not limit:
            return
        wanted = slurm.minutes(limit)
        most = [p.max_minutes for p in self.partitions().values()]
        if wanted and most and None not in most and wanted > max(most):
            names = ", ".join(self.partitions())
            raise ResourceError(
                f"{what} asks Slurm for {wanted} minutes, above the MaxTime of partition {names} "
                f"({max(most)} minutes); ask for less or choose a partition with longer jobs")

    def check_warning(self, spec: ArraySpec) -> None:
        """ConfigError when Slurm's warning before the time limit would come at once: every
        attempt would save its checkpoint and be requeued before doing any work."""
        limit = slurm.minutes(self.options.time or "") if spec.resources.timeout is None else None
        if limit and limit * 60 <= self.options.stop_warning:
            raise ConfigError(
                f"stop_warning = {self.options.stop_warning} s is not shorter than time = "
                f"{self.options.time!r} ({limit * 60} s): each task would be told to stop as it "
                "starts. Lower stop_warning or raise time", key="stop_warning")

    def accounting(self) -> bool:
        return slurm.has_accounting(self.cluster())

    def array_size(self) -> int:
        """The most tasks in one array: the cluster's MaxArraySize, or less if configured."""
        cluster = slurm.max_array_size(self.cluster())
        return min(cluster, self._array_size) if self._array_size else cluster

    def submit_limit(self) -> tuple[int, str] | None:
        """The most tasks one map may submit, and which limit says so: the controller's
        MaxJobCount, and the user's MaxSubmitJobs where accounting keeps associations."""
        limits = []
        count = slurm.max_job_count(self.cluster())
        if count:
            limits.append((count, f"the cluster's MaxJobCount={count}"))
        if self.accounting():
            user = os.environ.get("USER") or __import__("getpass").getuser()
            submit = slurm.max_submit(user)
            if submit:
                limits.append((submit, f"MaxSubmitJobs={submit} of user {user}"))
        return min(limits) if limits else None

    def check_limits(self, spec: ArraySpec) -> None:
        """ResourceError before any sbatch when the map has more tasks than may be submitted
        (each array task counts as a job): Slurm would refuse the arrays past the limit."""
        limit = self.submit_limit()
        if limit and spec.n_tasks > limit[0]:
            raise ResourceError(
                f"the map has {spec.n_tasks} tasks but {limit[1]} lets at most {limit[0]} be "
                f"submitted at once (every array task counts); give map() a chunksize that "
                f"makes at most {limit[0]} tasks, or split the items into several maps")

    def check_fits(self, spec: ArraySpec) -> None:
        """ResourceError before submitting when no node of the partition can ever run a task."""
        self.check_time(script.time_limit(spec, self.options),
                        f"timeout={spec.resources.timeout:g}s with retries={spec.resources.retries}"
                        if spec.resources.timeout else f"time = {self.options.time!r}")
        self.check_warning(spec)
        nodes = self.nodes()
        res = spec.resources
        where = f"partition {self.options.partition!r}" if self.options.partition else "the default partition"
        if not nodes:
            raise ResourceError(f"Slurm lists no nodes in {where}; check the partition name (sinfo)")
        if res.gpus and not any(n.gpus >= res.gpus for n in nodes):
            raise ResourceError(
                f"a task asks for {res.gpus} GPUs (gres gpu), but no node of {where} has that "
                f"many (sinfo's Gres: at most {max(n.gpus for n in nodes)}); ask for fewer, or "
                "choose a partition with GPUs (partition = ...)")
        if not any(n.cpus >= res.vcpus and n.memory >= res.memory for n in nodes):
            biggest = max(nodes, key=lambda n: (n.cpus, n.memory))
            raise ResourceError(
                f"a task asks for {res.vcpus:g} vcpus and {format_bytes(res.memory)}, but no node "
                f"of {where} has that much (the biggest, {biggest.name}, has {biggest.cpus} CPUs "
                f"and {format_bytes(biggest.memory)}); ask for less or choose another partition")

    def volumes(self, job_id: str, after_job: str = "", secrets: str = "") -> list[str]:
        """What a task container sees, each at its own path: its job's folder, the store's
        data (uploaded and staged inputs), the folder of the job a chained map reads
        (``after_job``), the job's secrets folder (``secrets``, read-only where the runtime
        can) and the shared paths; no other job's folder."""
        folders = [str(self.store.path(layout.prefix(job_id).rstrip("/"))),
                   str(self.store.path("data"))]
        if after_job and "/" not in after_job and not after_job.startswith("."):
            folders.append(str(self.store.path(layout.prefix(after_job).rstrip("/"))))
        if secrets:
            folders.append(secrets)
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
        mounts = list(self.options.mounts)
        return [*(f for f in folders if f not in paths.SharedPaths(mounts)), *mounts]

    def submit(self, spec: ArraySpec) -> str:
        try:
            script.check_env(spec.env)
            self.check_fits(spec)
            self.check_limits(spec)
        except Exception:
            remove_secrets(self.store, spec.job_id)  # delivered, and nothing will run
            raise
        size = self.array_size()
        marks = str(self.store.path(slurm_key(spec.job_id, "marks")))
        os.makedirs(marks, exist_ok=True)
        output = str(self.store.path(slurm_key(spec.job_id, "%A_%a.out")))
        volumes = self.volumes(spec.job_id, spec.after_job, spec.env.get(SECRETS_DIR, ""))
        runtime = runtimes.for_settings(self.options.runtime, Path(self.options.shared_dir))
        if runtime is not None:
            runtime.prepare(spec, volumes)
        upstream = depend.upstream_arrays(spec)
        ended = self._ended_arrays(spec.after_handle) if upstream else set()
        arrays = []
        for offset in range(0, spec.n_tasks, size):
            n = min(size, spec.n_tasks - offset)
            after = depend.for_array(spec, offset, n, upstream, ended,
                                     arrays[-1][0] if arrays else None)
            text = script.render(spec, offset, n, self.options, marks, output, volumes, after)
            write_private(self.store.path(slurm_key(spec.job_id, f"array-{offset:06d}.sh")), text)
            arrays.append([slurm.submit(text), offset, n])
            poller.shared(self.poll_interval, slurm.queue).watch([arrays[-1][0]])
            # Written after each array, so a failure half way still lets cancel find the rest.
            self.store.put_json(slurm_key(spec.job_id, "arrays.json"), arrays)
        return json.dumps({"job": spec.job_id, "arrays": arrays}, separators=(",", ":"))

    def _ended_arrays(self, handle: str) -> set[str]:
        """The arrays of a job (an upstream one) whose tasks have all ended."""
        states = self.states(handle)
        return {a for a, o, n in self._arrays(handle)[1]
                if all(states[t].state in TERMINAL for t in range(o, o + n))}

    def deliver_secrets(self, job_id: str, secrets: tuple) -> dict[str, str]:
        """The job's secrets in ``<store>/spmd/secrets/<job>/`` (0700, files 0600) on the
        shared filesystem; states() removes the folder once every task has ended."""
        return {SECRETS_DIR: str(write_secrets(self.store, job_id, secrets))}

    def _arrays(self, handle: str) -> tuple[str, list[tuple[str, int, int]]]:
        data = json.loads(handle)
        return data["job"], [(str(a), int(o), int(n)) for a, o, n in data["arrays"]]

    def _marks(self, job_id: str) -> dict[int, dict]:
        """Per task: attempts started, end codes by attempt, timed out, given up (one listing)."""
        folder = self.store.path(slurm_key(job_id, "marks"))
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        marks: dict[int, dict] = {}
        for name in names:
            parts = name.split(".")
            if len(parts) < 3 or not parts[0].isdigit() or not parts[2].isdigit():
                continue
            m = marks.setdefault(int(parts[0]), {"started": 0, "ends": {}, "timeout": False,
                                                 "infra": 0, "requeued": set()})
            what, number = parts[1], int(parts[2])
            if what == "start":
                m["started"] = max(m["started"], number)
            elif what == "end" and len(parts) == 4:
                m["ends"][number] = int(parts[3])
            elif what == "timeout":
                m["timeout"] = True
            elif what == "infra":
                m["infra"] = number
            elif what == "requeue":  # told to stop, its checkpoint saved (script.py)
                m["requeued"].add(number)
        return marks

    def states(self, handle: str) -> Mapping[int, TaskStatus]:
        """Every task's status: the marks (one listing of the store), and squeue's answer
        through the process's poller (poller.py): one squeue for all watched arrays, less
        often while nothing changes, at once when the marks changed."""
        job_id, arrays = self._arrays(handle)
        ids = [a for a, _, _ in arrays]
        marks = self._marks(job_id)
        changed = self._marks_seen.get(job_id) != marks
        self._marks_seen[job_id] = marks
        poll = poller.shared(self.poll_interval, slurm.queue)
        seen = poll.tasks(ids, fresh=changed)
        for array_id, _, n in arrays:  # an array's own record: its tasks not listed alone
            if (array_id, slurm.REST) in seen:
                rest = seen[(array_id, slurm.REST)]
                seen = {(array_id, i): rest for i in range(n)} | seen
        if any((a, i) not in seen for a, _, n in arrays for i in range(n)) and self.accounting():
            # squeue forgets ended jobs after MinJobAge; accounting remembers (one more call)
            seen = {**slurm.accounting(ids), **seen}
        states = {}
        outputs = None  # listed only for tasks Slurm forgot and that left no exit status
        for array_id, offset, n in arrays:
            for index in range(n):
                task = offset + index
                found, mark = seen.get((array_id, index)), marks.get(task)
                states[task] = task_status(found, mark, array_id, index)
                if found is None and states[task].lost == "infrastructure":
                    if outputs is None:
                        outputs = self._outputs(job_id)
                    if task in outputs:  # it ended well; only Slurm's record of it is gone
                        states[task] = TaskStatus(SUCCEEDED, max(1, states[task].attempts), 0)
                if found and found.state in RUNNING_STATES and mark and mark["ends"] and \
                        max(mark["ends"]) == mark["started"]:
                    self._marks_seen[job_id] = None  # its script is ending: ask again next poll
        if all(s.state in TERMINAL for s in states.values()):
            poll.forget(ids)  # nothing more to learn about these arrays
            remove_secrets(self.store, job_id)  # no task of the job runs again
        return states

    def _outputs(self, job_id: str) -> set[int]:
        """The tasks whose output is in the store (one listing)."""
        prefix = layout.output_prefix(job_id)
        names = (key[len(prefix):].split(".")[0] for key in self.store.list(prefix))
        return {int(name) for name in names if name.isdigit()}

    def cancel(self, handle: str) -> None:
        _, arrays = self._arrays(handle)
        slurm.cancel([a for a, _, _ in arrays])

    def cancel_pending(self, handle: str) -> None:
        """The failure budget is spent: ONE ``scancel --state=PENDING`` of every array. Tasks
        waiting for resources, the ``%N`` cap, the array before or their upstream item
        (chained) never start; running ones finish and report as usual."""
        _, arrays = self._arrays(handle)
        slurm.cancel_pending([a for a, _, _ in arrays])

    def logs(self, handle: str, task: int) -> str:
        job_id, arrays = self._arrays(handle)
        for array_id, offset, n in arrays:
            if offset <= task < offset + n:
                try:
                    key = slurm_key(job_id, f"{array_id}_{task - offset}.out")
                    return self.store.get(key).decode(errors="replace")
                except ObjectNotFound:
                    return ""
        return ""


def write_private(path, text: str) -> None:
    """Write a file only its owner can read: the script holds the Knot's env, which may be secret."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def task_status(seen: slurm.ArrayTask | None, marks: dict | None, array_id: str,
                index: int) -> TaskStatus:
    """One task's status from what squeue says about it and the marks its script left."""
    marks = marks or {"started": 0, "ends": {}, "timeout": False, "infra": 0, "requeued": set()}
    attempts = marks["started"]
    if seen is None:
        if marks["ends"] and max(marks["ends"]) == attempts:
            return ended(attempts, marks["ends"][attempts], None)
        # Slurm forgot it (after MinJobAge, or a controller restarted without its state) or
        # never had it; accounting (sacct) would know.
        return TaskStatus(FAILED, attempts, None,
                          f"the scheduler no longer knows this job: Slurm has no array task "
                          f"{array_id}_{index} and it left no exit status", "infrastructure")
    if seen.state in PENDING_STATES:
        if "launch failed requeued held" in seen.reason.lower():
            # Slurm held it after launches failed on a broken node: nothing releases it by
            # itself, so it ends as lost with Slurm's own reason.
            return TaskStatus(FAILED, attempts, None,
                              f"Slurm array task {array_id}_{index} is held after failed "
                              f"launches ({seen.reason}): its node may be drained (see "
                              "`sinfo -R`)", "infrastructure")
        if "held" in seen.reason.lower() or seen.state.endswith("HOLD"):
            # held by a user or an admin: it waits for `scontrol release`, and says so
            return TaskStatus(PENDING, attempts, None, f"Slurm holds it: {seen.reason}")
        if attempts in marks.get("requeued", ()):  # its last attempt saved its checkpoint
            return TaskStatus(PENDING, attempts, None, "requeued (walltime warning)", "requeue")
        # (squeue's reason, e.g. "Resources", is not a failure: a reason would read as a retry)
        return TaskStatus(PENDING, attempts)
    if seen.state in RUNNING_STATES:
        return TaskStatus(RUNNING, attempts)
    name = f"Slurm array task {array_id}_{index}"
    if seen.state == "CANCELLED":
        return TaskStatus(CANCELLED, attempts, seen.exit_code, "cancelled", "cancelled")
    if marks["timeout"]:
        return TaskStatus(FAILED, attempts, 124, "timed out (stopped by spmd inside the task)",
                          "timeout")
    if marks["infra"]:
        return TaskStatus(FAILED, attempts, seen.exit_code,
                          f"{name} was lost to the infrastructure {marks['infra']} times "
                          "(node failure, preemption, requeued at its time limit, or a "
                          "container that could not start; see its log)", "infrastructure")
    if seen.state in LOST and seen.state != "CANCELLED" and \
            not (marks["ends"] and max(marks["ends"]) == attempts):
        lost = LOST[seen.state]
        return TaskStatus(FAILED, attempts, seen.exit_code,
                          f"{name} ended {seen.state} ({seen.reason})", lost)
    if marks["ends"] and max(marks["ends"]) == attempts:
        return ended(attempts, marks["ends"][attempts], seen.state)
    if seen.state == "COMPLETED":
        return TaskStatus(SUCCEEDED, attempts, 0)
    return TaskStatus(FAILED, attempts, seen.exit_code,
                      f"{name} ended {seen.state} ({seen.reason}) before its task ran", "error")


def ended(attempt: int, code: int, slurm_state: str | None) -> TaskStatus:
    """The status of a task whose last attempt left its exit code."""
    if code == 0:
        return TaskStatus(SUCCEEDED, attempt, 0)
    if code == 137 or slurm_state == "OUT_OF_MEMORY":
        # SIGKILL that spmd did not send: the cgroup's (or the container's) OOM killer
        return TaskStatus(FAILED, attempt, code, "out of memory (killed at the job's memory "
                          "limit)", "oom")
    return TaskStatus(FAILED, attempt, code, f"exited with code {code}", "error")
