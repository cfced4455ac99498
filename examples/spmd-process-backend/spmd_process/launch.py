"""Runs one task under its memory limit: ``python -m spmd_process.launch --memory BYTES -- COMMAND``.

    setrlimit(RLIMIT_DATA, BYTES) ──> an allocation past the limit fails (MemoryError)
    a MemoryError, caught by the worker or not ──> exit OOM_EXIT at once, writing no
        output, as a container killed for its memory would; the scheduler reports "oom"
    COMMAND = python -m MODULE ... | python -c CODE ... ──> run in this process
        (so the rule above applies); anything else is exec'd (the limit is inherited)

RLIMIT_DATA counts the heap and private anonymous mappings, not shared libraries, so it
is close to what a container's memory limit counts. A task that still grows past the
limit some other way is killed by the scheduler, which watches its resident memory.
"""
from __future__ import annotations

import logging
import os
import resource
import runpy
import sys
import traceback

OOM_EXIT = 137  # what a shell reports for a process killed by SIGKILL, as the OOM killer does


def out_of_memory(exc_type, exc, tb) -> None:
    """Print what happened and end the task at once, before it writes any output."""
    limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(f"{text}spmd_process: the task ran out of memory (limit {limit} bytes)\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(OOM_EXIT)


class MemoryErrorHandler(logging.Handler):
    """spmd's worker logs each failed call before recording it: a MemoryError ends the task."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], MemoryError):
            out_of_memory(*record.exc_info)


def excepthook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, MemoryError):
        out_of_memory(exc_type, exc, tb)
    sys.__excepthook__(exc_type, exc, tb)


def limit_memory(limit: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def main(argv: list[str]) -> int:
    memory = None
    if argv[:1] == ["--memory"]:
        memory, argv = int(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m spmd_process.launch [--memory BYTES] -- COMMAND...", file=sys.stderr)
        return 2
    if memory:
        limit_memory(memory)
    python = argv[0] == sys.executable or os.path.basename(argv[0]).startswith("python")
    if python and len(argv) >= 3 and argv[1] in ("-m", "-c"):
        logging.getLogger("spmd").addHandler(MemoryErrorHandler(logging.ERROR))
        sys.excepthook = excepthook
        if argv[1] == "-m":
            sys.argv = [argv[2], *argv[3:]]
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *argv[3:]]
            exec(compile(argv[2], "<string>", "exec"), {"__name__": "__main__"})
        return 0
    os.execvp(argv[0], argv)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
