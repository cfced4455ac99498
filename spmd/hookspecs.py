"""The hooks a plugin implements. A backend plugin needs only ``spmd_register_backends``."""
from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("spmd")
hookimpl = pluggy.HookimplMarker("spmd")


@hookspec
def spmd_register_backends(register: Callable[..., None]) -> None:
    """Register backends: ``register("name", "package.module:BackendClass", install_hint="...")``.

    The dotted path is imported only when the backend is used, so a plugin whose
    dependencies are missing breaks nothing until it is selected.
    """


@hookspec
def spmd_register_stores(register: Callable[..., None]) -> None:
    """Register object stores by URL scheme: ``register("s3", "spmd_aws.store:S3Store")``.

    The class must have a ``from_url(url)`` classmethod. The worker inside a task
    container opens its job's store this way.
    """
