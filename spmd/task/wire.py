"""A warm container's messages, in one place: one JSON object per line on the server's unix
socket, between a scheduler's runner (spmd_local.runner) and the server (spmd.task.serve).

    runner ──> server   run(task, attempt, env, log, log_limit)   start that attempt
                        kill(task)                                 SIGKILL its process group
                        hello()                                    which attempt runs now?
    server ──> runner   started(task, attempt)
                        ended(task, attempt, code, oom[, error][, stopping])  also kept in
                                                   <log>.exit; stopping: the server ends next
                        hello(busy, last)                          the answer to hello()
"""
from __future__ import annotations

import json
from typing import Any, Mapping

RUN, KILL, HELLO, STARTED, ENDED = "run", "kill", "hello", "started", "ended"


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as the line the socket carries."""
    return json.dumps(message).encode() + b"\n"


def decode(line: bytes) -> dict:
    return json.loads(line)


def run(task: int, attempt: int, env: Mapping[str, str], log: str, log_limit: int) -> dict:
    return {"op": RUN, "task": task, "attempt": attempt, "env": dict(env), "log": log,
            "log_limit": log_limit}


def kill(task: int) -> dict:
    return {"op": KILL, "task": task}


def hello(busy: list | None = None, last: Mapping | None = None) -> dict:
    """The question (no arguments) or the server's answer: the attempt it runs, its last end."""
    return {"op": HELLO, "busy": busy, "last": last}


def started(task: int, attempt: int) -> dict:
    return {"op": STARTED, "task": task, "attempt": attempt}


def ended(task: int, attempt: int, code: int | None, oom: bool, error: str = "",
          stopping: bool = False) -> dict:
    """An attempt's end; ``stopping``: the container was told to stop and ends now, so it
    takes no other task."""
    message = {"op": ENDED, "task": task, "attempt": attempt, "code": code, "oom": oom}
    if error:
        message["error"] = error
    if stopping:
        message["stopping"] = True
    return message
