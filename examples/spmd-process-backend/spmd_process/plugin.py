"""The plugin module named by the ``spmd`` entry point: it registers one backend."""
from spmd import hookimpl


@hookimpl
def spmd_register_backends(register):
    # The dotted path is imported only when the backend is selected.
    register("process", "spmd_process.backend:ProcessBackend",
             install_hint="pip install spmd-process-backend")
