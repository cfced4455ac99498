"""Slurm's commands, called and parsed in one place: sbatch, squeue, scancel, scontrol, sinfo.

Every call is one process; a failure becomes a SlurmError naming the command and what
Slurm said. Nothing here keeps state: the cluster is asked each time.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from spmd.errors import SpmdError

#: squeue's fields, fixed width: array task id, state, reason, exit status, restarts.
SQUEUE_FIELDS = "JobArrayID:40,State:24,Reason:40,exit_code:12,RestartCnt:8"


class SlurmError(SpmdError):
    """A Slurm command failed or is missing; the message says which and what it printed."""


def run(argv: list[str], *, stdin: str | None = None, timeout: float = 60,
        env: dict[str, str] | None = None) -> str:
    """Run a Slurm command (``env``: variables to set for it); its standard output, or
    SlurmError."""
    if shutil.which(argv[0]) is None:
        raise SlurmError(f"{argv[0]} is not on PATH: run spmd where Slurm's commands are "
                         "(a login node), or install Slurm's client (Debian: slurm-client)")
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **env} if env else None)
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(f"{' '.join(argv[:2])} did not answer within {timeout:g}s; "
                         "is slurmctld up (scontrol ping)?") from exc
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip()[-800:]
        raise SlurmError(f"{' '.join(argv[:2])} failed (exit {result.returncode}): {said}")
    return result.stdout


def config() -> dict[str, str]:
    """``scontrol show config`` as a dict (``MaxArraySize`` -> ``'1001'``)."""
    values = {}
    for line in run(["scontrol", "show", "config"]).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def max_array_size(values: dict[str, str] | None = None) -> int:
    """Array task ids must be below this (``MaxArraySize``, 1001 unless configured)."""
    return _number((values if values is not None else config()).get("MaxArraySize"), 1001)


def max_job_count(values: dict[str, str]) -> int | None:
    """The most jobs (array tasks each count) the controller holds at once (``MaxJobCount``)."""
    return _number(values.get("MaxJobCount"), None)


def _number(text: str | None, default):
    try:
        return int((text or "").split()[0])
    except (ValueError, IndexError):
        return default


def max_submit(user: str) -> int | None:
    """The user's association limit on submitted jobs (``MaxSubmitJobs``; sacctmgr, where
    accounting exists): the smallest set on any of the user's associations, or None."""
    out = run(["sacctmgr", "--noheader", "--parsable2", "show", "association",
               "where", f"user={user}", "format=MaxSubmit"])
    limits = [int(x) for x in out.split() if x.strip().isdigit()]
    return min(limits) if limits else None


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory: int  # bytes
    gpus: int = 0  # its generic resources of type gpu (sinfo's Gres)


def gres_gpus(gres: str) -> int:
    """The GPUs in sinfo's Gres column: ``gpu:2``, ``gpu:a100:4(S:0-1)``, ``gpu:1,mps:100``;
    0 for ``(null)``."""
    count = 0
    for part in gres.split(","):
        fields = part.split("(")[0].split(":")
        if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
            count += int(fields[-1])
    return count


def nodes(partition: str | None) -> list[Node]:
    """The nodes of a partition (or of the default one), with their CPUs and memory."""
    argv = ["sinfo", "--noheader", "--Node", "--format=%N %c %m"]
    if partition:
        argv.append(f"--partition={partition}")
    found: dict[str, Node] = {}
    for line in run(argv).splitlines():
        parts = line.split()
        if len(parts) == 3:
            name, cpus, memory = parts
            found[name] = Node(name, int(cpus), int(memory.rstrip("+")) * 2**20)
    return list(found.values())


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    max_minutes: int | None  # the partition's MaxTime; None: no limit
    nodes: tuple[Node, ...]


def partitions() -> dict[str, Partition]:
    """Every partition with its time limit and nodes (CPUs, memory, GPUs): ONE sinfo call."""
    out = run(["sinfo", "--noheader", "--Node", "--format=%N %c %m %P %l %G"])
    rows: dict[str, dict] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) not in (5, 6):
            continue
        node, cpus, memory, name, limit = parts[:5]
        entry = rows.setdefault(name.rstrip("*"), {"default": name.endswith("*"),
                                                   "limit": minutes(limit), "nodes": {}})
        entry["nodes"][node] = Node(node, int(cpus), int(memory.rstrip("+")) * 2**20,
                                    gres_gpus(parts[5]) if len(parts) == 6 else 0)
    return {name: Partition(name, e["default"], e["limit"], tuple(e["nodes"].values()))
            for name, e in rows.items()}


def minutes(limit: str) -> int | None:
    """A Slurm time (``infinite``, ``30``, ``30:00`` (MM:SS), ``2:00:00``, ``1-12:00:00``) in
    whole minutes, rounded up; None for no limit."""
    if limit.lower() in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, rest = limit.rpartition("-") if "-" in limit else ("0", "", limit)
    fields = [int(f) for f in rest.split(":")]
    if "-" in limit:  # D-HH, D-HH:MM, D-HH:MM:SS
        fields += [0] * (3 - len(fields))
        hours, mins, secs = fields
    else:  # MM, MM:SS, HH:MM:SS
        hours, mins, secs = ([0] * (3 - len(fields)) + fields) if len(fields) == 3 else \
            (0, fields[0], fields[1] if len(fields) > 1 else 0)
    return int(days or 0) * 1440 + hours * 60 + mins + (1 if secs else 0)


def submit(script: str) -> str:
    """``sbatch --parsable`` of a script given on stdin; the job id. The job's umask is 077
    (``SLURM_UMASK``, which slurmd creates its output file with): logs are private."""
    out = run(["sbatch", "--parsable"], stdin=script, env={"SLURM_UMASK": "0077"}).strip()
    return out.split(";")[0]  # "id" or "id;cluster"


@dataclass(frozen=True)
class ArrayTask:
    """One array task as squeue reports it."""

    array_id: str
    index: int
    state: str
    reason: str
    exit_code: int | None  # the batch script's exit code, or -signal
    restarts: int


def queue(array_ids: list[str]) -> dict[tuple[str, int], ArrayTask]:
    """Every task of these arrays, ended ones included (kept for MinJobAge): ONE squeue call."""
    if not array_ids:
        return {}
    try:
        out = run(["squeue", "--noheader", "--array", "--states=all",
                   f"--jobs={','.join(array_ids)}", f"--Format={SQUEUE_FIELDS}"])
    except SlurmError as exc:
        if FORGOTTEN in str(exc):
            # The controller no longer knows these jobs (restarted without their state, or
            # past MinJobAge): not a passing error; the tasks are judged by what spmd recorded.
            return {}
        raise
    return parse_squeue(out)


FORGOTTEN = "Invalid job id specified"  # squeue's words for a job the controller does not know


#: the index of an array's own record when squeue shows it without one (``7000 CANCELLED``):
#: it stands for every task of the array that squeue does not list on its own
REST = -1


def parse_squeue(text: str) -> dict[tuple[str, int], ArrayTask]:
    """Parse ``squeue --array --Format=SQUEUE_FIELDS`` lines, e.g. ``7000_3 FAILED NonZeroExitCode 768 0``.
    A line without a task index (after ``scancel --state=PENDING``, see ``cancel_pending``)
    is keyed ``(array, REST)``."""
    tasks = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        array_id, underscore, index = parts[0].partition("_")
        if not underscore and array_id.isdigit():
            index = str(REST)
        elif not index.isdigit():  # "7000_[3-9]": squeue folds pending tasks without --array
            continue
        status = int(parts[-2]) if parts[-2].lstrip("-").isdigit() else None
        if status is not None:  # a wait status: exit code in the high byte, signal in the low
            status = -(status & 0x7F) if status & 0x7F else status >> 8
        restarts = int(parts[-1]) if parts[-1].isdigit() else 0
        tasks[(array_id, int(index))] = ArrayTask(array_id, int(index), parts[1],
                                                  " ".join(parts[2:-2]), status, restarts)
    return tasks


def has_accounting(values: dict[str, str] | None = None) -> bool:
    """Whether the cluster keeps accounting (slurmdbd), so that sacct knows ended jobs."""
    values = values if values is not None else config()
    return values.get("AccountingStorageType", "accounting_storage/none") != \
        "accounting_storage/none"


def accounting(array_ids: list[str]) -> dict[tuple[str, int], ArrayTask]:
    """Array tasks as accounting recorded them (for those squeue forgot): ONE sacct call."""
    if not array_ids:
        return {}
    # SLURM_BITSTR_LEN=0: an array's record of tasks never split from it (pending, or
    # cancelled so) names them all, not the first 64 bytes of the expression (sacct(1))
    out = run(["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={','.join(array_ids)}",
               "--format=JobID,State,ExitCode"], env={"SLURM_BITSTR_LEN": "0"})
    return parse_sacct(out)


def task_indices(text: str) -> list[int]:
    """The array task ids a JobID's part after ``_`` names: ``3``, or Slurm's expression
    for the tasks of the array's own record, ``[0,2-3]`` or ``[0-9%2]`` (with its cap);
    [] for anything else."""
    if text.isdigit():
        return [int(text)]
    if not (text.startswith("[") and text.endswith("]")):
        return []
    indices = []
    for part in text[1:-1].split("%")[0].split(","):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            return []  # cut short ("...") or a form not known here: nothing is guessed
        indices.extend(range(int(first), int(last if dash else first) + 1))
    return indices


def parse_sacct(text: str) -> dict[tuple[str, int], ArrayTask]:
    """Parse ``sacct --parsable2 --allocations --format=JobID,State,ExitCode``, e.g.
    ``7000_3|CANCELLED by 1000|0:15``, and ``7000_[5-9]|CANCELLED by 1000|0:0`` for the
    tasks of the array's own record (cancelled before they started)."""
    tasks = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 3 or "_" not in parts[0] or "." in parts[0]:
            continue
        array_id, _, index = parts[0].partition("_")
        state = parts[1].split()[0] if parts[1] else "UNKNOWN"
        code, _, signal = parts[2].partition(":")
        exit_code = -int(signal) if signal.isdigit() and int(signal) else \
            (int(code) if code.isdigit() else None)
        for task in task_indices(index):
            tasks[(array_id, task)] = ArrayTask(array_id, task, state, parts[1], exit_code, 0)
    return tasks


def cancel(array_ids: list[str]) -> None:
    """``scancel`` every task of these arrays, running or pending (one call)."""
    if array_ids:
        run(["scancel", *array_ids])


def cancel_pending(array_ids: list[str]) -> None:
    """``scancel --state=PENDING`` of these arrays (one call): the tasks that have not started,
    whatever they wait for (resources, the ``%N`` cap, a dependency, a requeue), and none
    that runs. Slurm cancels the array's own record of its unsplit pending tasks as one job,
    which squeue then shows without a task index (``REST``)."""
    if array_ids:
        run(["scancel", "--state=PENDING", *array_ids])
