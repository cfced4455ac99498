"""The one place this backend takes its directory store from: the core's ``DirectoryStore``,
so a Slurm install needs no other backend's package for its store."""
from spmd.stores.directory import DirectoryStore

__all__ = ["DirectoryStore"]
