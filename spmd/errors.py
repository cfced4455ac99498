"""Every error spmd raises on purpose.

    SpmdError
    ├── ConfigError (ValueError)         a bad key, value, profile or file; names the source
    │   └── UnknownBackendError          no backend by that name; lists the ones there are
    ├── PluginError                      a plugin failed to load or is incomplete
    ├── SerializationError (TypeError)   the function or an argument cannot be pickled
    ├── ResourceError (ValueError)       a task asks for more CPU or memory than the backend has
    ├── EngineError                      the container engine cannot be reached
    ├── DataError (ValueError)           a data reference (spmd.File, object URL) is unusable
    ├── CommandSpecError (ValueError)    a Command's argv, outputs or an item do not fit
    ├── CommandFailed                    a command exited non-zero or missed a declared output
    ├── ImageError                       the task image cannot be made
    │   ├── BaseImageError               base image missing or the wrong Python
    │   ├── CommandImageError            a Command's image has no python3 and none can be added
    │   ├── PlatformError                the engine cannot build for the tasks' CPU
    │   ├── RequirementError (ValueError) a requirement cannot be resolved
    │   └── SystemPackageError (ValueError) a Debian package is misnamed or not in the release
    ├── StoreError                       the object store failed
    │   ├── ObjectNotFound (KeyError)
    │   ├── InputsLost                   a job's inputs kept in memory are gone (a restart)
    │   └── ResultDamaged                an output, log or reused result cannot be decoded
    ├── WatchFailed                      a job's progress could not be checked, persistently
    ├── FailureBudgetSpent               not run: the job failed more items than max_failures
    ├── UpstreamFailed                   not run: a chained map's input item failed upstream
    ├── QueueError                       the batch queue refused or failed a request
    ├── JobNotFound (KeyError)           no job with that id in the store
    ├── RemoteError                      a task's exception whose type cannot be rebuilt here
    ├── AwsError                         an AWS request failed; ``code`` is AWS's (spmd_aws.aws)
    │   └── ProvisionError               the stack cannot be made or removed (spmd_aws.aws)
    └── TaskLost                         a task ended without writing its output
        ├── TaskOutOfMemory              killed for exceeding its memory limit
        └── TaskTimedOut                 killed for exceeding its timeout

Errors carry data (job id, task index, key) as attributes, not only in the message.
Backends define their own errors under SpmdError in their own package (drawn above with
the module that defines them), so the core imports no backend.
A user's own exception raised in a task is re-raised as itself, not wrapped.
"""
from __future__ import annotations


class SpmdError(Exception):
    """Root of every error spmd raises on purpose."""


class ConfigError(SpmdError, ValueError):
    """A configuration key, value, profile or file is wrong."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        self.key = key
        self.source = source
        if source:
            message = f"{message} (in {source})"
        super().__init__(message)


class UnknownBackendError(ConfigError):
    """No backend is registered under the requested name."""

    def __init__(self, name: str, known: list[str], source: str | None = None,
                 broken: dict[str, str] | None = None):
        self.name = name
        self.known = known
        self.broken = dict(broken or {})
        message = (f"unknown backend {name!r}; known backends: {', '.join(sorted(known)) or 'none'}. "
                   "Install the plugin that provides it, or pick one of these")
        if self.broken:
            message += "; plugins that failed to load: " + "; ".join(
                f"{plugin} ({reason})" for plugin, reason in sorted(self.broken.items()))
        super().__init__(message, key="backend", source=source)


class PluginError(SpmdError):
    """A plugin failed to load, or a backend it registered does not implement the interfaces."""

    def __init__(self, message: str, *, plugin: str):
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}")


class SerializationError(SpmdError, TypeError):
    """The function or one of the inputs cannot be pickled for transport."""

    def __init__(self, message: str, *, what: str):
        self.what = what
        super().__init__(message)


class ResourceError(SpmdError, ValueError):
    """A task asks for resources the backend can never give it."""


class DataError(SpmdError, ValueError):
    """A data reference cannot be used: the file is missing, or a URL is not an object URL."""

    def __init__(self, message: str, *, path: str):
        self.path = path
        super().__init__(message)


class CommandSpecError(SpmdError, ValueError):
    """A Command's argv or outputs are malformed, or an item does not fill its placeholders."""


class CommandFailed(SpmdError):
    """A command exited with a non-zero status, or did not write a declared output."""

    def __init__(self, reason: str, *, argv: list[str], exit_code: int, log_tail: str = ""):
        self.reason = reason
        self.argv = list(argv)
        self.exit_code = exit_code
        self.log_tail = log_tail
        message = f"command {' '.join(self.argv)[:200]!r} {reason}"
        if log_tail:
            message += "\n--- last lines of its output ---\n" + log_tail
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_command_failed, (self.reason, self.argv, self.exit_code, self.log_tail))


def _rebuild_command_failed(reason, argv, exit_code, log_tail):
    return CommandFailed(reason, argv=argv, exit_code=exit_code, log_tail=log_tail)


class EngineError(SpmdError):
    """The container engine (Docker) cannot be reached or refused a request."""


class ImageError(SpmdError):
    """The task image could not be built or published."""


class BaseImageError(ImageError):
    """The base image is missing, cannot be pulled, or has the wrong Python version."""

    def __init__(self, message: str, *, image: str):
        self.image = image
        super().__init__(message)


class CommandImageError(ImageError):
    """A Command's image has no python3, and spmd cannot install one into it."""

    def __init__(self, message: str, *, image: str):
        self.image = image
        super().__init__(message)


class PlatformError(ImageError):
    """The engine cannot build a task image for the platform (CPU) the tasks run on."""

    def __init__(self, message: str, *, platform: str):
        self.platform = platform
        super().__init__(message)


class RequirementError(ImageError, ValueError):
    """A requirement cannot be resolved into a wheel for the image's platform."""

    def __init__(self, message: str, *, requirement: str | None):
        self.requirement = requirement
        super().__init__(message)


class SystemPackageError(ImageError, ValueError):
    """A system (Debian) package name is malformed or not in the image's Debian release."""

    def __init__(self, message: str, *, package: str | None):
        self.package = package
        super().__init__(message)


class StoreError(SpmdError):
    """The object store failed."""


class InputsLost(StoreError):
    """A job's inputs, kept in memory while it ran (ObjectStore.keep_in_memory), are gone."""


class ObjectNotFound(StoreError, KeyError):
    """No object under that key."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(key)

    def __str__(self) -> str:
        return f"no object at key {self.key!r}"


class ResultDamaged(StoreError):
    """An object a job wrote (a task's output, a reused result) is there but cannot be decoded:
    truncated or overwritten. Fails the items it holds, never the others."""

    def __init__(self, key: str, cause: str, *, job_id: str = "", task: int | None = None):
        self.key = key
        self.cause = cause
        self.job_id = job_id
        self.task = task
        super().__init__(f"the result object {key} is damaged and cannot be read ({cause}); "
                         "run the item again (a map with reuse=True runs only what has no "
                         "intact result)")


class WatchFailed(SpmdError):
    """Checking a job's progress failed persistently (the store or the queue), beyond the
    watcher's error budget; the futures it had not resolved end with this error."""

    def __init__(self, job_id: str, failures: int, seconds: float, cause: str):
        self.job_id = job_id
        self.failures = failures
        self.seconds = seconds
        self.cause = cause
        super().__init__(f"job {job_id}: checking its progress failed {failures} times in a row "
                         f"over {seconds:.0f}s, last with {cause}; fix that (the store's disk, "
                         f"its permissions, the network or the queue), then "
                         f"spmd.attach({job_id!r}) picks the job up where it is")


class QueueError(SpmdError):
    """The batch queue refused or failed a request (submit, states, cancel, logs)."""


class JobNotFound(SpmdError, KeyError):
    """No job with that id exists in the configured store."""

    def __init__(self, job_id: str, where: str):
        self.job_id = job_id
        self.where = where
        super().__init__(job_id)

    def __str__(self) -> str:
        return (f"no job {self.job_id!r} in {self.where}; check the id and that the same "
                "profile/backend is selected as when it was submitted")


class RemoteError(SpmdError):
    """A task raised an exception whose type cannot be rebuilt on the client."""

    def __init__(self, type_name: str, message: str):
        self.type_name = type_name
        super().__init__(f"{type_name}: {message}")


class TaskLost(SpmdError):
    """A task ended without writing its output: crash, out of memory, timeout."""

    def __init__(self, reason: str, *, job_id: str, task: int, log_tail: str = "",
                 exit_code: int | None = None):
        self.reason = reason
        self.job_id = job_id
        self.task = task
        self.log_tail = log_tail
        self.exit_code = exit_code
        message = f"task {task} of job {job_id} was lost: {reason}"
        if log_tail:
            message += "\n--- last lines of the task's log ---\n" + log_tail
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_lost, (type(self), self.reason, self.job_id, self.task,
                                self.log_tail, self.exit_code))


def _rebuild_lost(cls, reason, job_id, task, log_tail, exit_code):
    return cls(reason, job_id=job_id, task=task, log_tail=log_tail, exit_code=exit_code)


class TaskOutOfMemory(TaskLost):
    """The task exceeded its memory limit and was killed."""


class TaskTimedOut(TaskLost):
    """The task exceeded its timeout and was killed."""


class FailureBudgetSpent(SpmdError):
    """The job failed more items than its ``max_failures`` allows (or, by default, its first
    items all failed the same way), so the items that had not started were cancelled."""

    def __init__(self, job_id: str, why: str):
        self.job_id = job_id
        self.why = why
        super().__init__(f"job {job_id}: not run, the job's failure budget is spent: {why}. "
                         f"Fix the cause, then map again with reuse=True to keep what succeeded "
                         f"(or raise max_failures)")


class UpstreamFailed(SpmdError):
    """A chained map's item did not run: the item of the job before it failed or was lost."""

    def __init__(self, job_id: str, item: int, cause: str):
        self.job_id = job_id
        self.item = item
        self.cause = cause
        super().__init__(f"not run: its input, item {item} of job {job_id}, failed: {cause}")

    def __reduce__(self):  # raised in a task, rebuilt as itself on the client
        return type(self), (self.job_id, self.item, self.cause)
