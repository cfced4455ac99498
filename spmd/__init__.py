"""spmd: run an existing Python function over many inputs, in containers, on any provider.

    knot = spmd.Knot(fit_subject, requirements=["dipy"], vcpus=2, memory="4GiB")
    job = knot.map(subjects)            # returns at once
    for future in spmd.as_completed(job):
        print(future.result())
"""
from .args import Args
from .backend import Backend, Capacity
from .batch_queue import ArraySpec, BatchQueue, Resources, TaskStatus
from .codec import RemoteTraceback
from .chain import gather
from .checkpoint import checkpoint_dir
from .command import Command, CommandResult
from .data import File, open_url, outputs
from .errors import (
    BaseImageError, CommandFailed, CommandImageError, CommandSpecError, ConfigError,
    DataError, EngineError, FailureBudgetSpent, ImageError, JobNotFound, ObjectNotFound, PluginError,
    QueueError, RemoteError, RequirementError, ResourceError, ResultDamaged, SerializationError,
    SpmdError, StoreError, SystemPackageError, TaskLost, TaskOutOfMemory, TaskTimedOut,
    UnknownBackendError, UpstreamFailed, WatchFailed,
)
from .executor import Executor
from .future import Future
from .hookspecs import hookimpl
from .image_registry import ImageRegistry
from .job import Job, as_completed, wait
from .knot import Knot, attach
from .object_store import ObjectStore
from .secrets import Secret
from .upstream import upstream_files

__version__ = "0.1.0"

# Quiet by default: the application decides whether spmd's log is shown.
import logging as _logging

_logging.getLogger("spmd").addHandler(_logging.NullHandler())

__all__ = [
    "Args", "ArraySpec", "Backend", "BaseImageError", "BatchQueue", "Capacity", "Command",
    "CommandFailed", "CommandImageError", "CommandResult", "CommandSpecError",
    "ConfigError", "DataError", "EngineError", "Executor", "FailureBudgetSpent", "File", "Future", "ImageError",
    "ImageRegistry", "Job", "JobNotFound", "Knot", "ObjectNotFound", "ObjectStore",
    "PluginError", "QueueError", "RemoteError", "RemoteTraceback", "RequirementError",
    "ResourceError", "Resources", "ResultDamaged", "Secret", "SerializationError", "SpmdError", "StoreError",
    "SystemPackageError", "TaskLost", "TaskOutOfMemory", "TaskStatus", "TaskTimedOut",
    "UnknownBackendError", "UpstreamFailed", "WatchFailed", "as_completed", "attach", "checkpoint_dir", "gather", "hookimpl", "open_url",
    "outputs", "upstream_files", "wait",
]
