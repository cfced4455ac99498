"""The fixtures every contract class is driven by.

A backend's test file provides two fixtures (as methods of its test class, in its module
or in a conftest):

``spmd_backend_name``
    the registered backend name, e.g. ``"local"``.
``spmd_backend_config``
    the ``config`` dict for ``spmd.Knot``/``spmd.attach``: where this test's store is and
    a *small* capacity (a task asking for the whole ``capacity()`` must run alone, so the
    kit can keep tasks pending; e.g. ``{"store_dir": ..., "max_vcpus": 2}``). It must be
    plain data (JSON): the kit passes it to another process.

Everything else is derived here and may be overridden the same way (a class that tests
only a store overrides ``spmd_store``).
"""
from __future__ import annotations

import secrets
import time
from typing import Any, Callable

import pytest

import spmd
from spmd.backend import Backend
from spmd.plugins import open_backend
from spmd.config import resolve

#: seconds the kit waits for a job or a task before it calls the backend stuck.
WAIT = 180


def wait_for(predicate: Callable[[], Any], seconds: float = WAIT, what: str = "a condition",
             every: float = 0.05) -> Any:
    """Poll predicate until it returns something true; AssertionError naming ``what`` if never."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g}s for {what}")
        time.sleep(every)


class BackendFixtures:
    """Derived fixtures: the backend, its parts, a Knot factory, attach, a scratch prefix."""

    @pytest.fixture
    def spmd_backend(self, spmd_backend_name, spmd_backend_config) -> Backend:
        return open_backend(resolve({**spmd_backend_config, "backend": spmd_backend_name}))

    @pytest.fixture
    def spmd_fresh_backend(self, spmd_backend_name, spmd_backend_config) -> Callable[[], Backend]:
        """Makes another Backend object on the same config, as a new client would."""
        def make() -> Backend:
            return open_backend(resolve({**spmd_backend_config, "backend": spmd_backend_name}))
        return make

    @pytest.fixture
    def spmd_knot(self, spmd_backend_name, spmd_backend_config) -> Callable[..., spmd.Knot]:
        """``spmd_knot(func, **options)``: a Knot on the backend under test."""
        def make(func, **options) -> spmd.Knot:
            return spmd.Knot(func, backend=spmd_backend_name, config=spmd_backend_config, **options)
        return make

    @pytest.fixture
    def spmd_attach(self, spmd_backend_name, spmd_backend_config) -> Callable[[str], spmd.Job]:
        def attach(job_id: str) -> spmd.Job:
            return spmd.attach(job_id, backend=spmd_backend_name, config=spmd_backend_config)
        return attach

    @pytest.fixture
    def spmd_exclusive(self, spmd_backend) -> dict:
        """Knot resources with which a task takes the whole capacity, so tasks run one at a time."""
        capacity = spmd_backend.capacity()
        return {"vcpus": capacity.vcpus, "memory": min(capacity.memory, 2 * 2**30)}

    @pytest.fixture
    def spmd_forget_job(self, spmd_backend) -> Callable[[str], None]:
        """``spmd_forget_job(job_id)``: make the backend's scheduler no longer know an ended
        job, as a controller restarted without its state or a service past its retention
        does. This default serves the backends of spmd's scheduler core (their queue is
        ``jobs/<id>/queue/`` in the store); any other backend's test provides its own."""
        from spmd.scheduling.client import SchedulerQueue
        from spmd.scheduling.core import queue_key

        def forget(job_id: str) -> None:
            if not isinstance(spmd_backend.queue, SchedulerQueue):
                pytest.fail(f"backend {type(spmd_backend).__name__}: its test must provide the "
                            f"spmd_forget_job fixture (see spmd.testing.fixtures)")
            queue = spmd_backend.queue
            wait_for(lambda: not queue.scheduler_alive(job_id), what=f"job {job_id}'s scheduler to exit")
            for name in ("spec.json", "state.json"):
                spmd_backend.store.delete(queue_key(job_id, name))
        return forget

    @pytest.fixture
    def spmd_stop_task(self, spmd_backend) -> Callable[[spmd.Job, int], None]:
        """``spmd_stop_task(job, task)``: tell a running task to stop from outside, as the
        backend's infrastructure does before it takes the task's machine or time away (local:
        ``docker stop`` of its container; Slurm: the warning signal before the time limit).
        Each backend's test provides it; a backend whose test cannot sets
        ``spmd_stops_tasks = False`` on its class (spmd.testing.checkpoint)."""
        def stop(job: spmd.Job, task: int) -> None:
            pytest.fail(f"backend {type(spmd_backend).__name__}: its test must provide the "
                        "spmd_stop_task fixture, or set spmd_stops_tasks = False (see "
                        "spmd.testing.checkpoint)")
        return stop

    @pytest.fixture
    def spmd_store(self, spmd_backend) -> spmd.ObjectStore:
        return spmd_backend.store

    @pytest.fixture
    def spmd_scratch(self, spmd_store):
        """A key prefix of this test's own in the store, emptied afterwards."""
        prefix = f"spmd-conformance/{secrets.token_hex(4)}/"
        yield prefix
        spmd_store.delete_prefix(prefix)
