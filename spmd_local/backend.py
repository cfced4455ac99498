"""LocalBackend: the three parts on this machine's Docker engine and file system."""
from __future__ import annotations

import os
from pathlib import Path

from spmd import config
from spmd.backend import Backend, Capacity, DataRule
from spmd.config import Key
from spmd.stores.directory import DirectoryStore

from .queue import LocalQueue
from .registry import DaemonRegistry


def default_store_dir() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return str(Path(cache) / "spmd" / "local")


class LocalBackend(Backend):
    """Tasks are containers on the local Docker engine; the store is a local directory."""

    name = "local"
    inputs_in_memory = True
    config_keys = (
        Key("store_dir", config.text, "directory of the local store (jobs, inputs, outputs, logs)"),
        Key("max_vcpus", config.positive_float, "CPUs all running tasks may use together "
            "(default: the engine's)"),
        Key("max_memory", config.memory, "memory all running tasks may use together "
            "(default: the engine's)"),
        Key("network", config.boolean, "give task containers a network (default: none; the "
            "store is a bind mount, so tasks need none unless they download)"),
        Key("log_limit", config.memory, "bytes of each task's log kept, the last ones (default "
            "64MiB); the log says where it was cut"),
        Key("share_with_group", config.group_name, "a Unix group of yours that may read (never "
            "write) the store's jobs, inputs and results (default: none, the store is yours alone)"),
    )
    poll_interval = 0.2
    poll_fast = 0.02  # a check reads a file and lists a folder
    # Tasks keep no network and no credentials: the job's scheduler fetches URL inputs into
    # the store's cache (mounted read-only) and publishes outputs_to destinations.
    data_rule = DataRule(inputs="host", outputs="host")

    def store_dir(self) -> str:
        """The configured store folder, or the user's default one."""
        return self.settings.get("store_dir") or default_store_dir()

    def make_store(self) -> DirectoryStore:
        return DirectoryStore(self.store_dir(), group=self.settings.get("share_with_group"))

    def doctor_checks(self):
        from .doctor import checks
        return checks(self)

    def make_registry(self) -> DaemonRegistry:
        return DaemonRegistry()

    def make_queue(self) -> LocalQueue:
        return LocalQueue(self.store, self.capacity, self.settings.get("log_limit"))

    def capacity(self) -> Capacity:
        from spmd import docker_engine

        from .gpus import count
        vcpus, memory = self.settings.get("max_vcpus"), self.settings.get("max_memory")
        info = docker_engine.client().info()
        vcpus = vcpus or float(info["NCPU"])
        memory = memory or int(info["MemTotal"])
        return Capacity(vcpus=vcpus, memory=memory, gpus=count(info))

    def describe(self) -> str:
        return f"local backend (store {self.store.root})"
