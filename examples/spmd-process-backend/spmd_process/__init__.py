"""spmd-process-backend: an example third-party spmd backend that runs tasks as local processes.

    registry = none (``uses_images = False``: tasks run with this Python environment)
    store    = spmd's DirectoryStore, a directory (``file://`` URLs, atomic puts)
    queue    = spmd's scheduler core (one detached process per job) with a runner starting
               ``python -m spmd.task.worker``
               children within a CPU/memory capacity, with timeouts, retries, cancel,
               a memory limit per task and logs saved in the store

Useful where Docker is not: an HPC node, a CI runner, inside a container.
"""
