"""The AWS task entry point: ``python3 -m spmd_aws.task [--timeout SECONDS] -- COMMAND...``.

It does what AWS Batch does not, then runs COMMAND (``python3 -m spmd.task.worker``):

* A plain job (one task: Batch arrays have at least 2 children) gets no
  ``AWS_BATCH_JOB_ARRAY_INDEX``, and a job may not set variables starting with
  ``AWS_BATCH`` itself; with ``SPMD_SINGLE_TASK=1`` this sets it to 0.
* Batch's own timeout is at least 60 s. A shorter timeout is enforced here: COMMAND
  is stopped (SIGTERM, then SIGKILL 10 s later) and this exits with code 124, which the
  job definition's retry strategy treats as final, as Batch does with its own timeouts.

* The attempt number is also given as ``SPMD_ATTEMPT`` (from ``AWS_BATCH_JOB_ATTEMPT``,
  plus ``SPMD_ATTEMPT_OFFSET`` in a task resubmitted with more memory), the name every
  backend gives it.

Without ``--timeout`` it replaces itself with COMMAND (no extra process).

Batch stops a job with SIGTERM (then SIGKILL 30 s later), as ECS does before a spot instance
is reclaimed: it reaches the worker (directly, or passed on by ``supervise``), which saves
``spmd.checkpoint_dir()`` under the job's prefix and exits 75 (spmd.task.checkpoint); the retry
strategy's ``Host EC2*`` / ``Your Spot Task*`` rule runs the task again, from it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

TIMEOUT_EXIT = 124
GRACE_SECONDS = 10


def main(argv: list[str]) -> int:
    timeout = None
    if argv[:1] == ["--timeout"]:
        timeout, argv = float(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python3 -m spmd_aws.task [--timeout SECONDS] -- COMMAND...", file=sys.stderr)
        return 2
    if "AWS_BATCH_JOB_ARRAY_INDEX" not in os.environ:
        if os.environ.get("SPMD_SINGLE_TASK") != "1":
            print("spmd: AWS_BATCH_JOB_ARRAY_INDEX is not set and this is not a single-task job",
                  file=sys.stderr)
            return 2
        os.environ["AWS_BATCH_JOB_ARRAY_INDEX"] = "0"
    os.environ["SPMD_ATTEMPT"] = str(int(os.environ.get("AWS_BATCH_JOB_ATTEMPT") or 1)
                                     + int(os.environ.get("SPMD_ATTEMPT_OFFSET") or 0))
    if timeout is None:
        os.execvp(argv[0], argv)
    return supervise(argv, timeout)


def supervise(argv: list[str], timeout: float) -> int:
    """Run argv; stop it after timeout seconds. Its exit code, or 124 when it timed out."""
    child = subprocess.Popen(argv)
    # Batch stops a job with SIGTERM: pass it on (as PID 1 this process would ignore it).
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    print(f"spmd: the task timed out after {timeout:g}s; stopping it", file=sys.stderr, flush=True)
    child.terminate()
    try:
        child.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    return TIMEOUT_EXIT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
