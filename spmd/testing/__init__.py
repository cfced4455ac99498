"""spmd's conformance kit: the semantics every backend keeps, as pytest test classes.

Like fsspec's abstract test suites, the classes are mixins driven by fixtures. A backend's
whole test file can be::

    import pytest
    import spmd.testing

    class TestMyBackend(spmd.testing.BackendContract):
        @pytest.fixture
        def spmd_backend_name(self):
            return "mine"

        @pytest.fixture
        def spmd_backend_config(self, tmp_path):
            return {"store_dir": str(tmp_path), "max_vcpus": 2}

``BackendContract`` is all the parts; each is usable alone:

    ObjectStoreContract     bytes by key: round trips (empty, 60 MB, 1,200 objects), ranges,
                            sorted prefix listing in pages, atomic put, reopening by URL
    ImageRegistryContract   reference, exists, publish (or: no registry without images)
    BatchQueueContract      an ArraySpec of a plain command: states, retries, timeout,
                            cancel, logs, the handle from another client
    MapContract             Knot.map and Job: results, arguments, remote errors,
                            unpicklable input, states, retries, timeout, memory, cancel,
                            logs, attach (also from another process), image reuse
    RerunContract           reuse=True: a rerun runs only what did not succeed, a changed
                            function runs all, a rerun of a running job attaches to it;
                            memory=[sizes]: only the task killed for memory runs again, larger
    DataContract            spmd.File as local paths (files, folders), a second map uploads
                            nothing, outputs via job.download and URLs, Command jobs (placeholders,
                            outputs, CommandFailed with the log tail, client-side checks, a user's
                            image, or its refusal on backends without images)
    UrlDataContract         spmd.File by URL (an object, a prefix) read where it lives with no
                            byte through the client, errors at map() (missing URL, unknown
                            scheme, unwritable destination, a field an item lacks), outputs_to
                            publishing per item, reuse keyed on the object's version (the
                            bucket: moto's S3 server, ``spmd.testing.buckets``)
    FaultContract           a damaged output fails only its items (ResultDamaged); on a store
                            that refuses writes (``ReadOnlyStore``) attach, status, logs,
                            results and the report still work; a job its scheduler forgot
                            resolves from the store (``spmd_forget_job`` fixture)
    PrivacyContract         a job's objects (and puts under umask 000) are private: nobody else
                            may read or write them (``ObjectStore.exposed``)
    FailureBudgetContract   max_failures: once spent, what has not started ends with
                            FailureBudgetSpent; what runs finishes, what succeeded stays
    ParallelCapContract     max_parallel: never more tasks of a map at once (by their own
                            start and end times)
    ChainContract           step2.map(job1) item by item before job 1 ends, UpstreamFailed
                            naming the failed upstream item; spmd.gather(job) for a group step
    SecretsContract         Knot(secrets=...): the env variable and the 0600 file in the task;
                            no object in the store, log or report holds a value afterwards
    CheckpointContract      spmd.checkpoint_dir(): a folder on the task's own disk; a task
                            stopped from outside (``spmd_stop_task`` fixture) saves it, runs
                            again from it (not spending ``retries``) and the report says so;
                            ``spmd_stops_tasks = False`` where the test cannot stop a task

Fixtures: see ``spmd.testing.fixtures``. The functions tasks run are in
``spmd.testing.functions``. ``spmd.testing.memory`` is an in-memory backend ("memory", after
``spmd.testing.memory.register()``) for testing the core's job logic without Docker.

Importing ``spmd.testing`` needs no pytest: the classes are loaded on first use, so a task
(which has no pytest) can import ``spmd.testing.functions``.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "BackendFixtures": "fixtures", "wait_for": "fixtures", "MapContract": "map",
    "DataContract": "data", "RerunContract": "rerun", "UrlDataContract": "urls",
    "FaultContract": "faults", "ReadOnlyStore": "faults", "FailureBudgetContract": "budget",
    "ParallelCapContract": "parallel", "ChainContract": "chain",
    "SecretsContract": "secrets", "CheckpointContract": "checkpoint",
    "BatchQueueContract": "queue", "ImageRegistryContract": "registry",
    "ObjectStoreContract": "store", "BackendContract": "contract",
    "PrivacyContract": "privacy",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'spmd.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
