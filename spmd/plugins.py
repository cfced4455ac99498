"""The one plugin manager: built-in backends and third-party ones (entry-point group ``spmd``).

Built-ins are registered by the same hooks as plugins. ``SPMD_PLUGINS`` (comma-separated
plugin names, or ``builtin``) restricts which third-party plugins load.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .backend import Backend
from .errors import PluginError, SpmdError, UnknownBackendError
from .keys import CORE_KEYS, Settings

log = logging.getLogger("spmd")

BUILTIN_PLUGINS = ("spmd.stores.plugin", "spmd_local.plugin", "spmd_aws.plugin")
ENTRY_POINT_GROUP = "spmd"


@dataclass(frozen=True)
class Entry:
    """A registered implementation: a name, where it lives, and how to get it if it is missing."""

    name: str
    target: str
    install_hint: str
    plugin: str
    help: str = ""
    #: a backend's runtime in every task image, declared so that it is known without an import
    runtime_requirements: tuple[str, ...] = ()
    runtime_packages: tuple[str, ...] = ()

    def load(self) -> Any:
        module_name, _, attribute = self.target.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attribute.split(".") if attribute else ():
                obj = getattr(obj, part)
        except ImportError as exc:
            hint = f"; {self.install_hint}" if self.install_hint else ""
            raise PluginError(f"cannot import {self.target} for {self.name!r}: {exc}{hint}",
                              plugin=self.plugin) from exc
        except AttributeError as exc:
            raise PluginError(f"{self.target} does not exist: {exc}", plugin=self.plugin) from exc
        return obj


_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
_backends: dict[str, Entry] = {}
_stores: dict[str, Entry] = {}
_commands: dict[str, Entry] = {}
_broken: dict[str, str] = {}


def manager() -> pluggy.PluginManager:
    """The plugin manager, with built-ins and entry-point plugins loaded once."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = _load()
        return _manager


def _load() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("spmd")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        try:  # a task image holds only the backend it runs on
            pm.register(importlib.import_module(name), name=name)
        except ImportError as exc:
            _broken[name] = f"{type(exc).__name__}: {exc}"
    allowed = os.environ.get("SPMD_PLUGINS")
    allowed_names = None if allowed is None else {p.strip() for p in allowed.split(",")}
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if allowed_names is not None and ep.name not in allowed_names:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
            pm.check_pending()  # a hook no spec declares (a typo) breaks only this plugin
        except Exception as exc:  # a broken plugin must not break the others
            if pm.get_plugin(ep.name) is not None:
                pm.unregister(name=ep.name)
            _broken[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("spmd plugin %r failed to load: %s", ep.name, exc)

    _collect(pm)
    return pm


def add_plugin(plugin: object, name: str) -> None:
    """Register one more plugin at run time (idempotent). ``spmd.testing.memory`` uses it, so
    its test backend exists only in the processes that ask for it."""
    pm = manager()
    with _lock:
        if pm.get_plugin(name) is None:
            pm.register(plugin, name=name)
            _collect(pm, only=name)


def _collect(pm: pluggy.PluginManager, only: str | None = None) -> None:
    # Each implementation is called with a register bound to its plugin's name, so an
    # error can say which plugin registered what.
    for hook_name, table in (("spmd_register_backends", _backends), ("spmd_register_stores", _stores),
                             ("spmd_register_commands", _commands)):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if only is not None and impl.plugin_name != only:
                continue
            def register(name: str, target: str, install_hint: str = "", help: str = "",
                         runtime_requirements: tuple[str, ...] = (),
                         runtime_packages: tuple[str, ...] = (),
                         _table=table, _plugin=impl.plugin_name) -> None:
                _table[name] = Entry(name, target, install_hint, _plugin, help,
                                     tuple(runtime_requirements), tuple(runtime_packages))
            try:
                impl.function(register=register)
            except Exception as exc:
                _broken[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
                log.warning("spmd plugin %r failed in %s: %s", impl.plugin_name, hook_name, exc)


def backend_names() -> list[str]:
    manager()
    return sorted(_backends)


def broken_plugins() -> dict[str, str]:
    """Plugins that failed to load, with the reason."""
    manager()
    return dict(_broken)


def backend_class(name: str) -> type:
    """The Backend class registered under name; UnknownBackendError or PluginError otherwise."""
    manager()
    entry = _backends.get(name)
    if entry is None:
        if name in _broken:
            raise PluginError(f"failed to load, so backend {name!r} is unavailable: {_broken[name]}",
                              plugin=name)
        raise UnknownBackendError(name, list(_backends), broken=_third_party_broken())
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise PluginError(f"{entry.target} is not a subclass of spmd.Backend", plugin=entry.plugin)
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise PluginError(f"backend {name!r} ({entry.target}) does not implement: "
                          f"{', '.join(missing)}", plugin=entry.plugin)
    return cls


def command_groups() -> dict[str, Entry]:
    """Command groups that plugins add to ``spmd`` (e.g. ``aws``), by name; loaded on use."""
    manager()
    return dict(_commands)


def store_class(scheme: str) -> type:
    """The ObjectStore class that opens URLs of this scheme."""
    manager()
    entry = _stores.get(scheme)
    if entry is None:
        raise UnknownBackendError(f"{scheme}://", [f"{s}://" for s in _stores],
                                  broken=_third_party_broken())
    cls = entry.load()
    from .stores.object_store import ObjectStore
    problems = []
    if not (isinstance(cls, type) and issubclass(cls, ObjectStore)):
        problems.append("is not a subclass of spmd.ObjectStore")
    if not callable(getattr(cls, "from_url", None)):
        problems.append("has no from_url(url) classmethod, which tasks use to open it")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        problems.append(f"does not implement {', '.join(missing)}")
    if problems:
        raise PluginError(f"{entry.target} (store for {scheme}://) {' and '.join(problems)}",
                          plugin=entry.plugin)
    return cls


def _third_party_broken() -> dict[str, str]:
    """Failed plugins worth telling a user about (a task image lacking a built-in is not)."""
    return {name: reason for name, reason in _broken.items() if name not in BUILTIN_PLUGINS}


def config_keys_of(backend: str) -> tuple:
    """The configuration keys of one backend; imports that backend's package and no other."""
    return tuple(backend_class(backend).config_keys)


def backend_declaring(key: str, *, exclude: str | None = None) -> str | None:
    """The first other registered backend that declares a configuration key, or None.

    It imports the other backends, so it is called only for a key the selected backend
    does not know (to tell a key meant for another profile from a typo).
    """
    for name in backend_names():
        if name == exclude:
            continue
        try:
            cls = backend_class(name)
        except PluginError as exc:
            log.debug("skipping config keys of backend %r: %s", name, exc)
            continue
        if any(k.name == key for k in cls.config_keys):
            return name
    return None


def known_config_keys() -> list:
    """Core keys plus every loadable backend's keys (imports every backend: for listings only)."""
    keys = {key.name: key for key in CORE_KEYS}
    for name in backend_names():
        try:
            cls = backend_class(name)
        except PluginError as exc:
            log.debug("skipping config keys of backend %r: %s", name, exc)
            continue
        for key in cls.config_keys:
            keys.setdefault(key.name, key)
    return list(keys.values())


def task_runtime(backend: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(requirements, packages) every task image holds besides the user's requirements.

    The runtime every built-in backend declares when it registers, so that one image (one
    tag, one entrypoint) runs locally and on AWS alike, without importing the backends not
    in use; a third-party backend's own needs (declared, or its class's) extend them, and its
    image then differs from the built-ins' by exactly those.
    """
    chosen = backend_class(backend)
    entries = [e for e in _backends.values() if e.plugin in BUILTIN_PLUGINS]
    entries.append(_backends[backend])
    requirements = [r for e in entries for r in e.runtime_requirements]
    packages = [p for e in entries for p in e.runtime_packages]
    requirements += chosen.runtime_requirements
    packages += chosen.runtime_packages
    return tuple(dict.fromkeys(requirements)), tuple(dict.fromkeys(packages))


def open_backend(settings: Settings) -> Backend:
    """The backend that settings select."""
    return backend_class(settings.backend)(settings)


def open_store(url: str):
    """The ObjectStore for a URL (``file://``, ``s3://``, a plugin's scheme), by its scheme."""
    return store_class(url.split("://", 1)[0]).from_url(url)
