"""Registers the core's own store, ``file://`` (a directory), through the hooks every plugin
uses; so a backend that keeps its store in a folder (local, Slurm, the process plugin's)
needs no other backend's package."""
from ..hookspecs import hookimpl


@hookimpl
def spmd_register_stores(register):
    register("file", "spmd.stores.directory:DirectoryStore")
