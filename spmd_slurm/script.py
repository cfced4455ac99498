"""The batch script of one array: what each Slurm array task runs.

    #SBATCH --array=0-(n-1)[%max_parallel], --cpus-per-task, --mem, --time, --gres=gpu:N,
            --dependency (depend.py) with --kill-on-invalid-dep, partition, account, options,
            --signal=B:USR1@stop_warning (tasks without a timeout)
    task = SLURM_ARRAY_TASK_ID + offset; attempt = attempts that ended or were requeued + 1
    decide LOST COUNTED INFRA ──> retry or final: the attempt rule's table for this array's
          resources, computed by render() from spmd.attempts.after (decisions.py); the
          script only says how an attempt ended and counts, and never compares a budget
    Slurm requeued it (node failure, preemption) ──> decide "infrastructure": final: mark
          "infra", exit 1
    loop: mark start ──> run the task (under `timeout` when it has one) ──> how it ended:
          exit 0 ──> mark its end, done
          75 after USR1 (Slurm's warning before the time limit; checkpoint saved) "requeue"
              ──> retry: `scontrol requeue` this array task; final: mark "infra", exit 1
          timed out "timeout" ──> final: mark "timeout", exit 124
          docker run could not start the container (125) "infrastructure" ──> retry: again
              in this allocation; final: mark "infra", exit 125
          137 "oom", any other code "error" ──> mark its end; retry: next attempt in this
              allocation; final: exit its code, or 0 for the worker's 1 (a call raised; its
              errors are in the output), so that a chained map's aftercorr task runs
          75 after TERM, or 143 (preemption, scancel, Slurm's own requeue) ──> no decision:
              Slurm requeues it (the same attempt runs again) or ends it; exit 143

Marks are empty files in ``jobs/<id>/slurm/marks/`` named ``<task>.<what>.<attempt>[.<n>]``
(``end``'s n: the exit code; ``requeue``'s: SLURM_RESTART_COUNT then; ``nostart``'s: the
losses to the infrastructure before it), so the client learns every task's attempts and exit
codes from one directory listing, and a run Slurm started again counts from them: COUNTED =
attempt - requeues (SPMD_INFRA_LOST, which keeps them off ``retries``), INFRA =
SLURM_RESTART_COUNT + nostart marks. A run after Slurm's own requeue runs the lost attempt
again under the same number; one after this script's requeue (a requeue mark of the run
before) has the next number, its loss judged already.

Why ``scontrol requeue`` rather than another attempt in this script's loop: the warning
comes shortly before Slurm ends the allocation, so the next attempt needs a new one; a
requeue keeps the array task's id, its place in the array's dependencies and its log, and
Slurm counts it in SLURM_RESTART_COUNT, which INFRA reads.

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

from . import decisions, runtimes

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
    tries = attempts.allowed(res, "error") + 1  # an allocation's attempts (the rule's)
    seconds = (res.timeout + KILL_AFTER + 5) * tries + 60
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
timeout_s={timeout}
{unset}
{exports}
export AWS_BATCH_JOB_ARRAY_INDEX=$SLURM_ARRAY_TASK_ID SPMD_TASK_OFFSET=$offset PYTHONUNBUFFERED=1
mkdir -p "$marks"
restarts=${{SLURM_RESTART_COUNT:-0}}
requeue_exit={requeue_exit}
# The attempt rule (spmd.attempts.after) for this array's resources, computed by render():
# how an attempt ended, the attempts `retries` counts (this one included), the losses to the
# infrastructure before it ──> retry or final.
decide() {{
    case "$1:$2:$3" in
{decisions}
        *) echo final;;
    esac
}}
requeues=$(ls "$marks" | grep -c "^$task\\.requeue\\." || true)
export SPMD_INFRA_LOST=$requeues
attempt=$(( $(ls "$marks" | grep -c "^$task\\.end\\." || true) + requeues + 1 ))
# losses to the infrastructure so far: Slurm's requeues (this script's own and Slurm's) and
# containers docker could not start
infra=$(( restarts + $(ls "$marks" | grep -c "^$task\\.nostart\\." || true) ))
if [ "$restarts" -gt 0 ] && [ ! -e "$marks/$task.requeue.$((attempt - 1)).$((restarts - 1))" ] \\
        && [ "$(decide infrastructure $((attempt - requeues)) $((infra - 1)))" = final ]; then
    # Slurm, not this script, requeued it (node failure, preemption): a loss the rule judges now
    echo "spmd: task $task was lost to the infrastructure (node failure or preemption) $infra times, more than infra_retries={infra_retries} allows; giving up"
    touch "$marks/$task.infra.$infra"
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
    if [ "$code" -eq "$requeue_exit" ] && [ "$stopping" = TERM ] || [ "$code" -eq 143 ]; then
        # SIGTERM from outside (after TERM the task saved its checkpoint): Slurm requeues,
        # cancels or stops the job and signals this script too, a moment later under load. No
        # end mark: a requeued run must not count this attempt as the user's; it judges the
        # loss. Slurm kills this script after KillWait: clean up before waiting.
        cleanup
        sleep 10 & wait $!
        exit 143
    fi
    # how the attempt ended, in the rule's words (spmd.attempts.Lost)
    if [ "$code" -eq 0 ]; then
        touch "$marks/$task.end.$attempt.0"
        exit 0
    elif [ "$code" -eq "$requeue_exit" ] && [ -n "$stopping" ]; then
        lost=requeue  # Slurm's warning before the time limit; its checkpoint is saved
        touch "$marks/$task.requeue.$attempt.$restarts"
    elif [ -n "$timeout_s" ] && [ "$code" -eq 124 -o "$code" -eq 137 ] \\
            && [ $((SECONDS - started)) -ge "${{timeout_s%.*}}" ]; then
        lost=timeout
    elif [ "$code" -eq 125 ] && [ {runtime} = docker ]; then
        lost=infrastructure  # docker run itself failed: it could not create or start the container
    elif [ "$code" -eq 137 ]; then
        lost=oom  # SIGKILL that spmd did not send: the cgroup's or the container's OOM killer
    else
        lost=error
    fi
    case "$lost:$(decide "$lost" $((attempt - requeues)) "$infra")" in
    requeue:retry)
        if ! scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"; then
            echo "spmd: scontrol requeue of task $task failed (is JobRequeue off?); giving up"
            touch "$marks/$task.infra.$((infra + 1))"
            exit 1
        fi
        sleep 30 & wait $!  # Slurm ends this run and starts the task again
        exit 0;;
    requeue:final)
        echo "spmd: task $task was requeued at its time limit or lost to the infrastructure $infra times, as many as infra_retries={infra_retries} allows; giving up"
        touch "$marks/$task.infra.$((infra + 1))"
        exit 1;;
    infrastructure:retry)
        echo "spmd: docker could not start the task's container (exit 125); trying again"
        touch "$marks/$task.nostart.$attempt.$infra"
        infra=$((infra + 1))
        sleep 2;;
    infrastructure:final)
        echo "spmd: docker could not start the task's container; lost to the infrastructure $((infra + 1)) times, giving up"
        touch "$marks/$task.infra.$((infra + 1))"
        exit 125;;
    timeout:final)
        echo "spmd: the task timed out after ${{timeout_s}}s and was stopped"
        touch "$marks/$task.timeout.$attempt"
        exit 124;;
    *:final)
        touch "$marks/$task.end.$attempt.$code"
        # exit 1 is the worker's "a call raised", its errors in the task's output (the mark
        # keeps the code): Slurm records COMPLETED, so a chained map's aftercorr task runs and
        # reads each item's own result or UpstreamFailed. Other codes (crash, OOM) fail it.
        [ "$code" -eq 1 ] && exit 0
        exit "$code";;
    *:retry)
        touch "$marks/$task.end.$attempt.$code"
        echo "spmd: attempt $attempt of task $task failed (exit $code); retrying"
        attempt=$((attempt + 1));;
    esac
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
        runtime=options.runtime, marks=shlex.quote(marks), requeue_exit=protocol.REQUEUE_EXIT,
        decisions=decisions.table(res), infra_retries=res.infra_retries,
        timeout=f"{res.timeout:g}" if res.timeout else "",
        unset="unset " + " ".join(NOT_INHERITED),
        exports="\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())),
        launch=launch(spec, options, list(volumes)),
        before=runtime.before(spec) if runtime else ":",
        after=runtime.after() if runtime else ":")
