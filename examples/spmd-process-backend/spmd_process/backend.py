"""ProcessBackend: tasks are processes on this machine; the store is a directory."""
from __future__ import annotations

import os
from pathlib import Path

from spmd import Backend, Capacity
from spmd import config
from spmd.config import Key
from spmd.scheduling import DirectoryStore

from .queue import ProcessQueue


def default_store_dir() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return str(Path(cache) / "spmd" / "process")


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


class ProcessBackend(Backend):
    """Runs each task as ``python -m spmd.task.worker`` in a child process of a detached scheduler."""

    name = "process"
    # The same keys, with the same parsers, as the local backend: one config serves both.
    config_keys = (
        Key("store_dir", config.text, "directory of the local store (jobs, inputs, outputs, logs)"),
        Key("max_vcpus", config.positive_float, "CPUs all running tasks may use together "
            "(default: this machine's)"),
        Key("max_memory", config.memory, "memory all running tasks may use together "
            "(default: this machine's)"),
        Key("log_limit", config.memory, "bytes of each task's log kept, the last ones (default "
            "64MiB); the log says where it was cut"),
        Key("share_with_group", config.group_name, "a Unix group of yours that may read (never "
            "write) the store's jobs, inputs and results (default: none, the store is yours alone)"),
    )
    # No image: tasks import these from this very environment (so they are not pickled by value).
    runtime_packages = ("spmd", "spmd_process")
    uses_images = False
    poll_interval = 0.2

    def make_store(self) -> DirectoryStore:
        return DirectoryStore(self.settings.get("store_dir") or default_store_dir(),
                              group=self.settings.get("share_with_group"))

    def make_registry(self):
        raise NotImplementedError("the process backend runs tasks without images, so it has no "
                                  "image registry")

    def make_queue(self) -> ProcessQueue:
        return ProcessQueue(self.store, self.capacity, self.settings.get("log_limit"))

    def capacity(self) -> Capacity:
        vcpus = self.settings.get("max_vcpus") or float(os.cpu_count() or 1)
        memory = self.settings.get("max_memory") or physical_memory()
        return Capacity(vcpus=vcpus, memory=memory)

    def describe(self) -> str:
        return f"process backend (store {self.store.root})"
