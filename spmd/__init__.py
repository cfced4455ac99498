"""spmd: run an existing Python function over many inputs, in containers, on any provider.

    knot = spmd.Knot(fit_subject, requirements=["dipy"], vcpus=2, memory="4GiB")
    job = knot.map(subjects)            # returns at once
    for future in spmd.as_completed(job):
        print(future.result())

The public names load on first use (PEP 562), so that a task's worker, a job's scheduler or
the CLI that imports one part of spmd does not pay for the rest (the client, image builds).
"""
from __future__ import annotations

import importlib as _importlib
import logging as _logging
import typing as _typing

from .errors import (
    BaseImageError, CommandFailed, CommandImageError, CommandSpecError, ConfigError,
    DataError, EngineError, FailureBudgetSpent, ImageError, InputsLost, JobNotFound, ObjectNotFound, PluginError,
    QueueError, RemoteError, RequirementError, ResourceError, ResultDamaged, SerializationError,
    SpmdError, StoreError, SystemPackageError, TaskLost, TaskOutOfMemory, TaskTimedOut,
    UnknownBackendError, UpstreamFailed, WatchFailed,
)

__version__ = "0.1.0"

# Quiet by default: the application decides whether spmd's log is shown.
_logging.getLogger("spmd").addHandler(_logging.NullHandler())

#: where each public name other than the errors lives
_LAZY = {
    "Args": "client.args", "Backend": "backend", "Capacity": "backend",
    "ArraySpec": "batch_queue", "BatchQueue": "batch_queue", "Resources": "batch_queue",
    "TaskStatus": "batch_queue", "RemoteTraceback": "codec", "checkpoint_dir": "task.checkpoint", "gather": "client.chain",
    "Command": "client.command", "CommandResult": "client.command", "File": "data",
    "open_url": "data", "outputs": "data", "Executor": "client.executor",
    "Future": "client.future", "hookimpl": "hookspecs", "ImageRegistry": "image_registry",
    "Job": "client.job", "as_completed": "client.job", "wait": "client.job",
    "Knot": "client.knot", "attach": "client.knot", "ObjectStore": "stores.object_store",
    "Secret": "secrets", "upstream_files": "upstream",
}

__all__ = [
    "Args", "ArraySpec", "Backend", "BaseImageError", "BatchQueue", "Capacity", "Command",
    "CommandFailed", "CommandImageError", "CommandResult", "CommandSpecError",
    "ConfigError", "DataError", "EngineError", "Executor", "FailureBudgetSpent", "File", "Future", "ImageError",
    "ImageRegistry", "InputsLost", "Job", "JobNotFound", "Knot", "ObjectNotFound", "ObjectStore",
    "PluginError", "QueueError", "RemoteError", "RemoteTraceback", "RequirementError",
    "ResourceError", "Resources", "ResultDamaged", "Secret", "SerializationError", "SpmdError", "StoreError",
    "SystemPackageError", "TaskLost", "TaskOutOfMemory", "TaskStatus", "TaskTimedOut",
    "UnknownBackendError", "UpstreamFailed", "WatchFailed", "as_completed", "attach", "checkpoint_dir", "gather", "hookimpl", "open_url",
    "outputs", "upstream_files", "wait",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:  # a submodule, as `spmd.secrets` after `import spmd`
        try:
            return _importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'spmd' has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if _typing.TYPE_CHECKING:  # what type checkers and IDEs read
    from .backend import Backend, Capacity
    from .batch_queue import ArraySpec, BatchQueue, Resources, TaskStatus
    from .task.checkpoint import checkpoint_dir
    from .client.args import Args
    from .client.chain import gather
    from .client.command import Command, CommandResult
    from .client.executor import Executor
    from .client.future import Future
    from .client.job import Job, as_completed, wait
    from .client.knot import Knot, attach
    from .codec import RemoteTraceback
    from .data import File, open_url, outputs
    from .hookspecs import hookimpl
    from .image_registry import ImageRegistry
    from .secrets import Secret
    from .stores.object_store import ObjectStore
    from .upstream import upstream_files
