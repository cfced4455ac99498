"""Why a Batch job ended, read from its structured fields; and the retry rules Batch applies.

Reasons are classified by the *start* of AWS's own fields, never by a word found anywhere in
them: a pull failure reads "CannotPullContainerError: ... request canceled ... (Client.Timeout
exceeded ...)", which is neither a cancel nor a timeout.

    statusReason == CANCEL_REASON                 cancelled (spmd's own TerminateJob reason)
    statusReason == BUDGET_REASON                 cancelled: not started, the failure budget
                                                  is spent (spmd's own CancelJob reason)
    exit 124 under spmd_aws.task --timeout,
      or statusReason == TIMEOUT_REASON           timeout
    container.reason  OutOfMemoryError...         oom
    any reason        CannotPullContainerError... infrastructure: image not pulled/started
                      CannotStartContainerError, ResourceInitializationError, DockerTimeoutError
                      (on EC2 in container.reason; statusReason "Task failed to start")
    statusReason      Host EC2 (instance ...) terminated. / Your Spot Task was interrupted.
                                                  infrastructure: spot reclaimed / host lost
    statusReason      MISCONFIGURATION:... CAPACITY:...
                      Canceled by JobStateTimeLimit action due to reason: ...
                      spmd: ended with its array, never placed: ...
                                                  error: never placed (jobStateTimeLimitActions,
                                                  and the rest of its array, which spmd ends)
    anything else                                 error (the user's code), with the exit code

Sources: "Job status reasons" / "CannotPullContainer errors" in the AWS Batch user guide,
"Stopped tasks error codes" in the Amazon ECS developer guide, "Job timeouts" and
"Automated job retries" (retryStrategy.evaluateOnExit) in the AWS Batch user guide.
"""
from __future__ import annotations

from dataclasses import replace

from spmd import attempts
from spmd.batch_queue import (CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, Resources,
                              TaskStatus)
from spmd.errors import ResourceError

from .task import TIMEOUT_EXIT  # spmd_aws.task's exit code when its own short timeout fired

CANCEL_REASON = "spmd: cancelled by the user"
#: spmd's CancelJob reason once a job's failure budget is spent (max_failures)
BUDGET_REASON = "spmd: not started, the job's failure budget is spent"
TIMEOUT_REASON = "Job attempt duration exceeded timeout"  # Batch's own timeout
#: why AWS Batch failed a job without running it: a job in its dependsOn failed
#: ("Job dependencies", AWS Batch user guide: the dependent job moves PENDING to FAILED)
DEPENDENCY_FAILED = "Dependent Job failed"
NOT_RUN = "not run: a job it depends on failed"  # such a task's reason
#: ECS stop codes of a container that never ran: the image was not pulled, created or started
IMAGE_ERRORS = ("CannotPullContainerError", "CannotStartContainerError",
                "CannotCreateContainerError", "CannotInspectContainerError",
                "ResourceInitializationError", "DockerTimeoutError")
#: the statusReason of an EC2 job whose container never started (its cause in container.reason)
START_FAILED = "Task failed to start"
HOST_LOST = ("Host EC2 (instance ", "Your Spot Task was interrupted")
UNPLACEABLE = ("MISCONFIGURATION:", "CAPACITY:")
#: the statusReason of a job jobStateTimeLimitActions cancelled ("Jobs stuck in RUNNABLE due to
#: capacity", AWS Batch user guide: "Canceled by JobStateTimeLimit action due to reason: ...")
TIME_LIMIT_ENDED = ("Canceled by JobStateTimeLimit action", "Terminated by JobStateTimeLimit action")
#: spmd's TerminateJob reason for the rest of an array the queue ended one child of for
#: being unplaceable (followed by that child's reason)
UNPLACED_REASON = "spmd: ended with its array, never placed"
#: how the reason of a task that was never placed begins
NEVER_PLACED = "never placed"
IMAGE_HINT = ("image could not be pulled/started: check that the image exists in the registry "
              "the job definition names, that the instances reach it (a NAT gateway or VPC "
              "endpoints in private subnets), that the execution role may pull it, and that "
              "the image's architecture matches the compute environment's (config key "
              "architecture)")
PLACE_HINT = ("no instance of the compute environment can run this task: lower vcpus/memory/"
              "gpus or change instance_types, max_vcpus or subnets (see docs/aws.md)")


def retry_strategy(resources: Resources, max_attempts: int, fargate: bool,
                   short_timeout: bool) -> dict:
    """The job definition's retryStrategy, counted from the attempt rule (spmd.attempts).

    Batch tells apart the losses its rules name: an image not pulled or started
    ("infrastructure"), a host or spot instance lost (the worker saved its checkpoint:
    "requeue"), a kill for memory, spmd_aws.task's short timeout (exit 124) and the rest
    ("error"). Each RETRYs where the rule runs it again (``attempts.allowed``). Batch keeps
    one count of attempts, so the two budgets are separate only while the rule retries no
    error (``retries == 0``, the default): attempts = 1 + the infrastructure's allowance, and
    every other end → EXIT. When it retries errors the count is 1 + their allowance and
    serves both: the user's code never runs more often than asked, and a loss to the
    infrastructure uses one of those attempts. Rules match in order (at most 5). A kill for
    memory that the rule grows EXITs here (spmd_aws.memory submits the task again larger).
    """
    most = max_attempts - 1
    errors = attempts.allowed(resources, "error", most)
    image = attempts.allowed(resources, "infrastructure", most)
    host = attempts.allowed(resources, "requeue", most)
    # An image that was not pulled or started: on EC2 the job's statusReason is "Task failed
    # to start" and the cause ("CannotPullContainerError: ...") is in container.reason,
    # which onReason matches; onStatusReason matches statusReason only.
    rules = [{"onReason": "Cannot*", "action": _action(image)},  # Cannot{Pull,Start,...}Container
             {"onStatusReason": START_FAILED + "*", "action": _action(image)},
             {"onStatusReason": "ResourceInitializationError*", "action": _action(image)},
             {"onStatusReason": "Your Spot Task*" if fargate else "Host EC2*",
              "action": _action(host)}]
    if not errors:
        rules = [r for r in rules if r["action"] == "RETRY"] + [{"onReason": "*", "action": "EXIT"}]
        return {"attempts": 1 + max(image, host), "evaluateOnExit": rules}
    if short_timeout and not attempts.after(resources, 1, "timeout").again:
        rules.append({"onExitCode": str(TIMEOUT_EXIT), "action": "EXIT"})
    if attempts.after(resources, 1, "oom").kind != "retry":  # grown, or final
        rules.insert(0, {"onReason": "OutOfMemoryError*", "action": "EXIT"})
    if len(rules) > 5:
        raise ResourceError(
            "AWS Batch takes at most 5 retry rules: a list of memory sizes with retries "
            "and a timeout under 60 s needs 6; give one memory size, retries=0, or a "
            "timeout of 60 s or more")
    return {"attempts": 1 + errors, "evaluateOnExit": rules}


def _action(retried: int) -> str:
    return "RETRY" if retried else "EXIT"


def _fields(job: dict) -> list[str]:
    """statusReason and container.reason, the job's own (its last attempt) before each attempt's."""
    texts = [job.get("statusReason"), (job.get("container") or {}).get("reason")]
    for attempt in reversed(job.get("attempts") or ()):
        texts += [attempt.get("statusReason"), (attempt.get("container") or {}).get("reason")]
    return [t.strip() for t in texts if t and t.strip()]


def exit_code(job: dict) -> int | None:
    code = (job.get("container") or {}).get("exitCode")
    if code is None:
        for attempt in reversed(job.get("attempts") or ()):
            code = (attempt.get("container") or {}).get("exitCode")
            if code is not None:
                break
    return code


def _starting(texts: list[str], prefixes: tuple[str, ...]) -> str | None:
    return next((t for t in texts if t.startswith(prefixes)), None)


def _timeout_of(job: dict) -> str:
    command = list((job.get("container") or {}).get("command") or ())
    if "--timeout" in command:
        return f"{command[command.index('--timeout') + 1]}s"
    seconds = (job.get("timeout") or {}).get("attemptDurationSeconds")
    return f"{seconds}s" if seconds else ""


def task_status(job: dict, waiting: str = "") -> TaskStatus:
    """A task's TaskStatus from its Batch job (a ListJobs summary merged with DescribeJobs),
    with its last attempt's start and end (Batch gives epoch milliseconds) for the report."""
    status = _classify(job, waiting)
    started, stopped = job.get("startedAt"), job.get("stoppedAt")
    return replace(status, started=started / 1000 if started else None,
                   ended=stopped / 1000 if stopped else None)


def _classify(job: dict, waiting: str = "") -> TaskStatus:
    """The state and reason of a Batch job.

    waiting: the RUNNABLE statusReason last seen for the job's array, added to the reason
    of a task that ended without being placed.
    """
    status = job.get("status", "SUBMITTED")
    attempts = len(job.get("attempts") or ())
    if status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING"):
        reason = job.get("statusReason") or ""
        return TaskStatus(PENDING, attempts, reason=reason if reason.startswith(UNPLACEABLE) else "")
    if status == "RUNNING":
        return TaskStatus(RUNNING, attempts)
    code = exit_code(job)
    if status == "SUCCEEDED":
        return TaskStatus(SUCCEEDED, attempts, 0 if code is None else code)
    texts = _fields(job)
    own = (job.get("statusReason") or "").strip()
    command = (job.get("container") or {}).get("command") or ()
    if own == CANCEL_REASON:
        return TaskStatus(CANCELLED, attempts, code, "cancelled", "cancelled")
    if own == BUDGET_REASON:
        return TaskStatus(CANCELLED, attempts, code, "not started: the job's failure budget "
                          "is spent", "cancelled")
    if own == TIMEOUT_REASON or (code == TIMEOUT_EXIT and "--timeout" in command):
        limit = _timeout_of(job)
        return TaskStatus(FAILED, attempts, code,
                          f"timed out after {limit}" if limit else f"timed out ({own})", "timeout")
    if own.startswith(DEPENDENCY_FAILED):  # never ran: spmd_aws.chain names the upstream item
        return TaskStatus(FAILED, attempts, code, f"{NOT_RUN} ({own})",
                          "error")
    found = _starting(texts, ("OutOfMemoryError",))
    if found:
        return TaskStatus(FAILED, attempts, code, f"out of memory ({found})", "oom")
    found = _starting(texts, IMAGE_ERRORS) or _starting(texts, (START_FAILED,))
    if found:
        return TaskStatus(FAILED, attempts, code, f"{IMAGE_HINT} ({found})", "infrastructure")
    found = _starting(texts, HOST_LOST)
    if found:
        return TaskStatus(FAILED, attempts, code, f"spot reclaimed / host lost ({found})",
                          "infrastructure")
    found = _starting(texts, UNPLACEABLE + TIME_LIMIT_ENDED + (UNPLACED_REASON,))
    if not found and waiting and not attempts and code is None:
        found = texts[0] if texts else "ended before it started"  # the queue's own words
    if found:
        seen = f"; while waiting: {waiting}" if waiting and waiting != found else ""
        return TaskStatus(FAILED, attempts, code,
                          f"{NEVER_PLACED}, ended by the job queue ({found}{seen}): {PLACE_HINT}",
                          "error")
    detail = "; ".join(dict.fromkeys(texts)) or "failed"
    if code is not None:
        detail += f" (exit code {code})"
    return TaskStatus(FAILED, attempts, code, detail, "error")
