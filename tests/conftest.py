"""Shared fixtures: a fresh local store per test and the real Docker engine."""
from __future__ import annotations

import pytest


@pytest.fixture
def store_dir(tmp_path):
    path = tmp_path / "store"
    path.mkdir()
    return str(path)


@pytest.fixture
def local(store_dir):
    """Config for Knot/attach: the local backend on a store of this test's own, 2 CPUs."""
    return {"store_dir": store_dir, "max_vcpus": 2}


@pytest.fixture(scope="session")
def engine():
    """The real Docker engine, which the set-up script starts; a test needing it fails without it."""
    from spmd import docker_engine
    return docker_engine.client()


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path, monkeypatch):
    """No user or project config file leaks into a test."""
    monkeypatch.setenv("SPMD_USER_CONFIG", str(tmp_path / "no-user-config.toml"))
    for name in ("SPMD_PROFILE", "SPMD_BACKEND", "SPMD_BASE_IMAGE", "SPMD_STORE_DIR"):
        monkeypatch.delenv(name, raising=False)


# Under pytest-xdist (scripts/test.sh runs two workers) a file's tests stay on one worker,
# so module fixtures run once; so do all the tests of a stack that a session fixture starts
# (moto + registry for tests/aws, a private Slurm for tests/slurm), so each starts once.
# A test marked with an xdist_group of its own runs beside them (its stack started again).
_ONE_WORKER = ("aws", "slurm")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group"):  # a test that asks for a worker of its own
            continue
        parts = item.path.relative_to(config.rootpath).parts
        group = parts[1] if len(parts) > 2 and parts[1] in _ONE_WORKER else "/".join(parts)
        item.add_marker(pytest.mark.xdist_group(group))
