"""What the kit's tasks run.

These live in an importable module of ``spmd`` on purpose: a task image holds ``spmd`` and
a process backend runs tasks with the client's ``spmd``, so cloudpickle sends them by
reference and every backend runs the very same code.
"""
from __future__ import annotations

import os
import time


class SubjectError(Exception):
    """A user's own exception type, which must come back as itself."""


def square(x):
    return x * x


def add(a, b=0, *, scale=1):
    return (a + b) * scale


def environment(name):
    return os.environ.get(name)


def fragile(x):
    if x == 3:
        raise SubjectError(f"subject {x} has no b0 volume")
    if x == 5:
        raise ValueError("negative variance")
    return x * 10


def flaky(x, succeed_on):
    """Fails until attempt ``succeed_on``; the attempt number comes from SPMD_ATTEMPT."""
    attempt = int(os.environ["SPMD_ATTEMPT"])
    print(f"item {x} attempt {attempt}", flush=True)
    if attempt < succeed_on:
        raise RuntimeError(f"transient failure of {x} on attempt {attempt}")
    return x, attempt


def sleepy(seconds):
    print(f"going to sleep for {seconds}s", flush=True)
    time.sleep(seconds)
    return seconds


def sleepy_or_fail(seconds):
    time.sleep(abs(seconds))
    if seconds < 0:
        raise ValueError(f"asked to fail after {-seconds}s")
    return seconds


def outlast_failures(seconds, failures=2):
    """Negative seconds: fail as sleepy_or_fail does. Positive: return seconds, that long
    after ``failures`` other tasks of this job have written their outputs, so this task is
    still running when those failures spend a failure budget (FailureBudgetContract)."""
    if seconds < 0:
        return sleepy_or_fail(seconds)
    from .. import layout, protocol
    from ..task import worker
    # `python -m spmd.task.worker` runs the worker as __main__, whose current task this import
    # of spmd.task.worker does not see: the task's environment names the store and job then
    store, job_id = worker.current_task() or (worker.open_store(os.environ[protocol.STORE_URL]),
                                              os.environ[protocol.JOB_ID])
    for _ in range(1500):  # 300 s
        if sum(1 for _ in store.list(layout.output_prefix(job_id))) >= failures:
            time.sleep(seconds)
            return seconds
        time.sleep(0.2)
    raise TimeoutError(f"fewer than {failures} other tasks of job {job_id} ended in 300 s")


def hog(megabytes):
    print(f"allocating {megabytes} MB", flush=True)
    block = b"x" * (megabytes * 2**20)  # touches every page, unlike bytearray(n)
    return len(block)


def chatty(x):
    print(f"working on item {x}", flush=True)
    return x


def crash(code):
    print(f"exiting with code {code} before any output", flush=True)
    os._exit(code)


def slow_triple(x):
    time.sleep(1)
    return 3 * x


def read_checked(path):
    """The text of a file; a file that says "bad" fails (its data needs fixing)."""
    with open(path) as handle:
        text = handle.read()
    if "bad" in text:
        raise ValueError(f"bad data in {os.path.basename(path)}")
    return text


def read_upper(path):
    """Another function over the same files (a changed function)."""
    with open(path) as handle:
        return handle.read().upper()


def read_secrets(names):
    """What a task sees of the Knot's secrets, as sha256 digests (a result must not hold the
    secret): each value secret's value, each file secret's content and file mode (a name
    ending in _FILE is a file secret)."""
    import hashlib
    import stat
    digest = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    seen = {}
    for name in names:
        if name.endswith("_FILE"):
            path = os.environ[name]
            with open(path) as handle:
                seen[name] = (digest(handle.read()), oct(stat.S_IMODE(os.stat(path).st_mode)))
        else:
            seen[name] = digest(os.environ[name])
    return seen


def count_with_checkpoint(steps, seconds=0.2):
    """Counts to ``steps``, one step per ``seconds``, keeping the count in spmd.checkpoint_dir()
    (written whole, then renamed). Each attempt also records in the job's store how far it
    got (``jobs/<id>/progress/<task>-a<attempt>``), so a test knows when to stop it. Returns
    (the count, the count each attempt started from, the folder)."""
    import spmd
    from spmd import protocol
    from spmd.plugins import open_store

    folder = spmd.checkpoint_dir()
    state = folder / "count"
    count = int(state.read_text()) if state.exists() else 0
    starts = [int(n) for n in (folder / "starts").read_text().split()] \
        if (folder / "starts").exists() else []
    starts.append(count)
    (folder / "starts").write_text(" ".join(map(str, starts)))
    progress = None
    if os.environ.get(protocol.JOB_ID):  # in a task
        store = open_store(os.environ[protocol.STORE_URL])
        progress = (f"jobs/{os.environ[protocol.JOB_ID]}/progress/{protocol.task_index()}-a"
                    f"{protocol.attempt_number()}")
    while count < steps:
        time.sleep(seconds)
        count += 1
        (folder / "count.tmp").write_text(str(count))
        os.replace(folder / "count.tmp", state)
        if progress:
            store.put(progress, str(count).encode())
    return count, starts, str(folder)
