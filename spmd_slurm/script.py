"""The batch script of one array: what each Slurm array task runs.

    #SBATCH --array=0-(n-1)[%max_parallel], --cpus-per-task, --mem, --time, --gres=gpu:N,
            --dependency (depend.py) with --kill-on-invalid-dep, partition, account, options,
            --signal=B:USR1@stop_warning (tasks without a timeout)
    task = SLURM_ARRAY_TASK_ID + offset; attempt = attempts that ended or were requeued + 1
    lost to the infrastructure (requeued) more than infra_retries times ──> give up, mark "infra"
    loop: mark start ──> run the task (under `timeout` when it has one) ──> mark its end
          docker run could not start the container (exit 125) ──> again, under infra_retries
          exit 0 ──> done; timed out ──> mark "timeout", done (never retried);
          failed and retries left ──> next attempt in the same allocation; else exit its code,
          or 0 for the worker's 1 (a call raised; its errors are in the output), so that a
          chained map's aftercorr task runs and reads them
    USR1 (Slurm's warning before the time limit) or TERM (preemption, scancel) ──> passed to
          the task, which saves its checkpoint_dir() and exits 75 (protocol.REQUEUE_EXIT)
          ──> after USR1: mark "requeue" and `scontrol requeue` this array task while
          SLURM_RESTART_COUNT < infra_retries (spmd.attempts.infra_allowed), else give
          up, mark "infra"; after TERM: Slurm itself requeues it (preemption: the same
          attempt runs again, from the checkpoint) or ends it (scancel)

Marks are empty files in ``jobs/<id>/slurm/marks/`` named ``<task>.<what>.<attempt>[.<code>]``,
so the client learns every task's attempts and exit codes from one directory listing. A
Slurm-level requeue (node failure, preemption) runs the script again: the attempt that was
lost is run again under the same number, and ``retries`` is not spent on it; an attempt that
saved its checkpoint leaves a requeue mark, so the next one has the next number, and
SPMD_INFRA_LOST (the requeue marks) keeps it off ``retries``.

Why ``scontrol requeue`` rather than another attempt in this script's loop: the warning
comes shortly before Slurm ends the allocation, so the next attempt needs a new one; a
requeue keeps the array task's id, its place in the array's dependencies and its log, and
Slurm counts it in SLURM_RESTART_COUNT, the count the script's give-up rule already reads.

The task's output goes to Slurm's ``--output`` file (``%A_%a.out``, appended across requeues),
which the queue reads as the task's log.
"""
from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from spmd import attempts, protocol
from spmd.batch_queue import ArraySpec
from spmd.errors import ConfigError

from . import runtimes

#: variables the worker reads that must come from this script, never from the submitter.
NOT_INHERITED = ("AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ATTEMPT", "SPMD_TASK_OFFSET",
                 "SPMD_ATTEMPT", "SPMD_SINGLE_TASK", "SPMD_INFRA_LOST")
KILL_AFTER = 5  # seconds between `timeout`'s TERM and KILL
#: seconds before the time limit Slurm warns a task (--signal=B:USR1@N), the stop_warning
#: key's default: time to save its checkpoint_dir to shared_dir (Slurm checks limits about
#: every 30 s, warning up to a check early and killing at least a check later)
STOP_WARNING = 120
PYTHONS = ("python", "python3")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Options:
    """Where and how the arrays of one backend run (from the profile)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # Slurm's --time when a task has no timeout
    sbatch_options: tuple[str, ...] = ()
    runtime: str = "python"  # or "docker"
    python: str = "python3"  # the interpreter tasks run (an environment on shared_dir)
    shared_dir: str = ""  # bind-mounted into containers at the same path
    mounts: tuple[str, ...] = ()  # shared_paths that exist, bind-mounted alike (data, outputs_to)
    stop_warning: int = STOP_WARNING  # seconds before the time limit a task is told to stop


def time_limit(spec: ArraySpec, options: Options) -> str | None:
    """Slurm's --time (minutes): every attempt's timeout plus a margin, or the profile's."""
    res = spec.resources
    if res.timeout is None:
        return options.time
    # The script enforces each attempt's timeout itself (Slurm checks only every ~30 s, in
    # whole minutes); Slurm's limit is the backstop for the whole allocation.
    seconds = (res.timeout + KILL_AFTER + 5) * (res.retries + 1) + 60
    return str(math.ceil(seconds / 60))


def sbatch_lines(spec: ArraySpec, n: int, options: Options, output: str,
                 after: str = "") -> list[str]:
    """The #SBATCH lines; ``after``: Slurm's dependency list (``aftercorr:7000001``, ...)."""
    res = spec.resources
    cap = f"%{spec.max_parallel}" if spec.max_parallel else ""  # at most N tasks at once
    lines = [f"--job-name=spmd-{spec.job_id}", f"--array=0-{n - 1}{cap}",
             f"--cpus-per-task={max(1, math.ceil(res.vcpus))}",
             f"--mem={max(1, math.ceil(res.memory / 2**20))}M",
             f"--output={output}", "--open-mode=append", "--requeue"]
    if res.gpus:
        lines.append(f"--gres=gpu:{res.gpus}")
    if after:
        # a task whose dependency can never be met (its aftercorr task failed) is cancelled,
        # never left pending; the client reads the upstream item's error (UpstreamFailed)
        lines += [f"--dependency={after}", "--kill-on-invalid-dep=yes"]
    limit = time_limit(spec, options)
    if limit:
        lines.append(f"--time={limit}")
    if res.timeout is None:  # a task with its own timeout ends by it, never at Slurm's limit
        lines.append(f"--signal=B:USR1@{options.stop_warning}")
    if options.partition:
        lines.append(f"--partition={options.partition}")
    if options.account:
        lines.append(f"--account={options.account}")
    if options.qos:
        lines.append(f"--qos={options.qos}")
    lines += list(options.sbatch_options)
    return [f"#SBATCH {line}" for line in lines]


def task_command(spec: ArraySpec, options: Options, volumes: list[str]) -> str:
    """The shell words that run one attempt (the worker, or the queue's own command)."""
    command = list(spec.command)
    runtime = runtimes.for_settings(options.runtime, Path(options.shared_dir))
    if runtime is None:
        if command and command[0] in PYTHONS:
            command[0] = options.python
        return " ".join(shlex.quote(w) for w in command)
    if spec.resources.timeout and options.runtime == "docker":
        # counted from the task's start in the container, not from docker run
        command = ["timeout", f"--kill-after={KILL_AFTER}", f"{spec.resources.timeout:g}",
                   *command]
    return runtime.launch(spec, volumes, command)


TEMPLATE = """\
#!/bin/bash
{sbatch}
# spmd job {job_id}: tasks {offset}..{last} of {n_tasks} ({runtime} runtime)
set -u
umask 077
offset={offset}
task=$((SLURM_ARRAY_TASK_ID + offset))
marks={marks}
retries={retries}
infra_retries={infra_retries}
timeout_s={timeout}
{unset}
{exports}
export AWS_BATCH_JOB_ARRAY_INDEX=$SLURM_ARRAY_TASK_ID SPMD_TASK_OFFSET=$offset PYTHONUNBUFFERED=1
mkdir -p "$marks"
restarts=${{SLURM_RESTART_COUNT:-0}}
requeue_exit={requeue_exit}
if [ "$restarts" -gt "$infra_retries" ]; then
    echo "spmd: task $task was lost to the infrastructure (node failure or preemption) $restarts times, more than infra_retries=$infra_retries; giving up"
    touch "$marks/$task.infra.$restarts"
    exit 1
fi
[ "$restarts" -gt 0 ] && echo "--- spmd: requeued by Slurm (restart $restarts) ---"
# The task's scratch folder holds everything it stages (TMPDIR points there) and is removed
# however the task ends; one a killed earlier run of this task left on this node goes first.
scratch=${{TMPDIR:-/tmp}}
rm -rf "$scratch/spmd-{job_name}-$task-"* 2>/dev/null
work=$(mktemp -d "$scratch/spmd-{job_name}-$task-XXXXXX")
envfile=$work.env
container=""
pid=""
stopping=""
cleanup() {{ [ -n "$container" ] && docker rm -f "$container" >/dev/null 2>&1; rm -rf "$work" "$envfile"; }}
# Told to stop: the task gets the signal too (it saves its checkpoint_dir and exits 75).
forward() {{
    if [ -n "$container" ]; then docker kill --signal="$1" "$container" >/dev/null 2>&1
    elif [ -n "$pid" ]; then kill -"$1" "$pid" 2>/dev/null; fi
}}
trap cleanup EXIT
trap 'stopping="${{stopping:-warning}}"; forward USR1' USR1
trap 'stopping=TERM; forward TERM' TERM
cd "$work"
export TMPDIR=$work
infra=0
failures=$(ls "$marks" | grep -c "^$task\\.end\\.[0-9]*\\.[1-9]" || true)
requeues=$(ls "$marks" | grep -c "^$task\\.requeue\\." || true)
export SPMD_INFRA_LOST=$requeues
attempt=$(( $(ls "$marks" | grep -c "^$task\\.end\\." || true) + requeues + 1 ))
while true; do
    export SPMD_ATTEMPT=$attempt
    [ "$attempt" -gt 1 ] && echo "--- spmd: attempt $attempt ---"
    touch "$marks/$task.start.$attempt"
    {before}
    started=$SECONDS
    {launch} &
    pid=$!
    # a trap interrupts wait: wait again while the task saves its checkpoint
    while :; do wait $pid; code=$?; [ -n "$stopping" ] && kill -0 $pid 2>/dev/null || break; done
    pid=""
    {after}
    if [ "$code" -eq "$requeue_exit" ] && [ "$stopping" = TERM ]; then
        # its checkpoint is saved; Slurm requeues it (preemption: the same attempt again) or
        # ends it (scancel), killing this script after KillWait: clean up before waiting
        cleanup
        sleep 10 & wait $!
        exit 143
    fi
    if [ "$code" -eq "$requeue_exit" ] && [ -n "$stopping" ]; then
        touch "$marks/$task.requeue.$attempt"
        if [ "$restarts" -ge "$infra_retries" ]; then
            echo "spmd: task $task was requeued at its time limit $restarts times, as many as infra_retries=$infra_retries allows; giving up"
            touch "$marks/$task.infra.$((restarts + 1))"
            exit 1
        fi
        if ! scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"; then
            echo "spmd: scontrol requeue of task $task failed (is JobRequeue off?); giving up"
            touch "$marks/$task.infra.$((restarts + 1))"
            exit 1
        fi
        sleep 30 & wait $!  # Slurm ends this run and starts the task again
        exit 0
    fi
    if [ -n "$timeout_s" ] && [ "$code" -eq 124 -o "$code" -eq 137 ] \\
            && [ $((SECONDS - started)) -ge "${{timeout_s%.*}}" ]; then
        echo "spmd: the task timed out after ${{timeout_s}}s and was stopped"
        touch "$marks/$task.timeout.$attempt"
        exit 124
    fi
    if [ "$code" -eq 125 ] && [ {runtime} = docker ]; then
        # docker run itself failed (the daemon could not create or start the container):
        # a loss to the infrastructure, retried under infra_retries, not retries
        infra=$((infra + 1))
        if [ "$infra" -gt "$infra_retries" ]; then
            echo "spmd: docker could not start the task's container $infra times; giving up"
            touch "$marks/$task.infra.$infra"
            exit 125
        fi
        echo "spmd: docker could not start the task's container (exit 125); trying again"
        sleep 2
        continue
    fi
    if [ "$code" -eq 143 ]; then
        # SIGTERM from outside: Slurm requeues, cancels or stops the job and signals this
        # script too, a moment later under load. No end mark: a requeued run must not count
        # this attempt as the user's. Slurm kills this script after KillWait: clean up first.
        cleanup
        sleep 10 & wait $!
        exit 143
    fi
    touch "$marks/$task.end.$attempt.$code"
    [ "$code" -eq 0 ] && exit 0
    failures=$((failures + 1))
    # exit 1 is the worker's "a call raised", its errors in the task's output (the mark keeps
    # the code): Slurm records COMPLETED, so a chained map's aftercorr task runs and reads each
    # item's own result or UpstreamFailed. Other codes (crash, OOM) fail the Slurm task.
    [ "$failures" -gt "$retries" ] && {{ [ "$code" -eq 1 ] && exit 0; exit "$code"; }}
    echo "spmd: attempt $attempt of task $task failed (exit $code); retrying"
    attempt=$((attempt + 1))
done
"""

def launch(spec: ArraySpec, options: Options, volumes: list[str]) -> str:
    """The line that starts one attempt: under `timeout` here, or inside the container."""
    command = task_command(spec, options, volumes)
    if spec.resources.timeout and options.runtime != "docker":
        return f'timeout --kill-after={KILL_AFTER} "$timeout_s" {command}'
    return command


def check_env(env: dict) -> None:
    """ConfigError for a variable name the batch script could not export as it is."""
    for name in env:
        if not ENV_NAME.fullmatch(name):
            raise ConfigError(f"env name {name!r} is not a shell variable name (letters, digits "
                              "and _, not starting with a digit); rename it", key="env")


def render(spec: ArraySpec, offset: int, n: int, options: Options, marks: str, output: str,
           volumes: list[str] = (), after: str = "") -> str:
    """The batch script for tasks ``offset .. offset+n-1`` of spec; ``volumes``: the folders
    a task container sees (its job's folder, the data, the shared paths); ``after``: the
    array's Slurm dependencies (depend.py)."""
    check_env(spec.env)
    res = spec.resources
    env = {**spec.env, "SPMD_IMAGE": spec.image}
    runtime = runtimes.for_settings(options.runtime, Path(options.shared_dir))
    job_name = re.sub(r"[^A-Za-z0-9_.-]", "-", spec.job_id)
    return TEMPLATE.format(
        sbatch="\n".join(sbatch_lines(spec, n, options, output, after)), job_id=job_name,
        job_name=job_name, offset=offset, last=offset + n - 1, n_tasks=spec.n_tasks,
        runtime=options.runtime, marks=shlex.quote(marks), retries=res.retries,
        requeue_exit=protocol.REQUEUE_EXIT,
        infra_retries=attempts.infra_allowed(res), timeout=f"{res.timeout:g}" if res.timeout else "",
        unset="unset " + " ".join(NOT_INHERITED),
        exports="\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())),
        launch=launch(spec, options, list(volumes)),
        before=runtime.before(spec) if runtime else ":",
        after=runtime.after() if runtime else ":")
