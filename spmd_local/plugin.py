"""Registers the local backend, through the same hooks as any plugin (its store, file://, is
the core's)."""
from spmd.hookspecs import hookimpl


@hookimpl
def spmd_register_backends(register):
    register("local", "spmd_local.backend:LocalBackend",
             install_hint="the local backend needs the Docker SDK: pip install docker",
             runtime_requirements=("apache-libcloud", "fasteners"),
             runtime_packages=("spmd", "spmd_local"))

