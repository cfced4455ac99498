"""The hooks a plugin implements. A backend plugin needs only ``spmd_register_backends``.

Each hook receives a ``register`` callback; what it registers is a name and a dotted path
(``"package.module:attribute"``) that is imported only when that name is used.
"""
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


@hookspec
def spmd_register_commands(register: Callable[..., None]) -> None:
    """Register a command group of the ``spmd`` command line, e.g. ``spmd aws up``:
    ``register("aws", "spmd_aws.cli:configure", help="provision or remove the AWS stack")``.

    The target is ``configure(parser: argparse.ArgumentParser) -> None``: it adds the group's
    subcommands, each with ``set_defaults(func=handler)`` where ``handler(args) -> int``
    returns the exit status. It is imported only when the group is run (or its help shown).
    """
