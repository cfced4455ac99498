"""Resolved configuration: explicit arguments > environment > project file > user file > defaults.

A file holds top-level keys (defaults for every profile) and named profiles under
``[profiles.NAME]``. The project file is the nearest ``spmd.toml`` (or ``[tool.spmd]`` in
``pyproject.toml``) from the working directory upwards; the user file is
``$XDG_CONFIG_HOME/spmd/config.toml`` (``SPMD_USER_CONFIG`` overrides the path). Every key is
declared, by the core or by a backend, with a parser; a bad key or value is a ConfigError
naming the file and the key.

A project file may come from someone else (a cloned repository, a planted ``/tmp/spmd.toml``),
so it is trusted less than the user's own file (see ``project_trust``): one that another user
owns, that others may write, or that sits in a world-writable folder is ignored with a
warning; and the keys that can run code or send data elsewhere (``USER_ONLY``: paths,
interpreters, images, mirrors, endpoints, sbatch options) it may set only in folders the
user's own file lists under ``trusted_projects``.
"""
from __future__ import annotations

import logging
import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigError
from .keys import (CORE_KEYS, Key, Settings, boolean, group_name, image_reference, memory,
                   positive_float, positive_int, redact, string_list, text, url)

# the keys' names are spmd.config's too, as backends and users know them
__all__ = ["CORE_KEYS", "ENV_PREFIX", "Key", "Settings", "TRUSTED_PROJECTS", "USER_ONLY", "boolean",
           "group_name", "image_reference", "memory", "positive_float", "positive_int", "project_config_path",
           "redact", "resolve", "string_list", "text", "url", "user_config_path"]

ENV_PREFIX = "SPMD_"
log = logging.getLogger("spmd")

#: keys only the user's own config, the environment or an argument may set: each can run code
#: (images, interpreters, mirrors, sbatch options) or send the job's data elsewhere (paths,
#: buckets, endpoints, registries). A project file sets them only in a trusted_projects folder.
USER_ONLY = frozenset({
    "base_image", "debian_mirror", "store_dir", "shared_dir", "shared_paths", "python",
    "sbatch_options", "runtime", "bucket", "endpoint_url", "registry", "aws_profile", "job_role",
    "read_buckets", "write_buckets", "subnets", "security_groups", "share_with_group",
})
#: the user file's top-level list of folders whose project files may set USER_ONLY keys
TRUSTED_PROJECTS = "trusted_projects"


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("SPMD_USER_CONFIG"):
        return Path(environ["SPMD_USER_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "spmd" / "config.toml"


def project_config_path(start: Path | None = None) -> Path | None:
    """The nearest spmd.toml, or pyproject.toml holding [tool.spmd], from start upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "spmd.toml").is_file():
            return folder / "spmd.toml"
        pyproject = folder / "pyproject.toml"
        # One that is not the user's to trust is not even parsed (a broken one planted in /tmp
        # would otherwise stop every run below it).
        if pyproject.is_file() and not _untrusted(pyproject) \
                and "spmd" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse TOML: {exc}", source=str(path)) from exc


def _untrusted(path: Path) -> str | None:
    """Why a project file is not the user's to trust (None: it is): owned by another user,
    writable by others, or in a folder anyone may write (where anyone may have put it)."""
    me = os.geteuid()
    st, folder = path.stat(), path.parent.stat()
    if st.st_uid not in (me, 0):
        return f"it is owned by another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "other users may write it"
    if folder.st_mode & stat.S_IWOTH or folder.st_uid not in (me, 0):
        return f"its folder {path.parent} belongs to, or may be written by, other users"
    return None


def _trusted_folders(raw: Any, source: Path) -> tuple[Path, ...]:
    """The user file's trusted_projects: folders whose project files may set USER_ONLY keys."""
    try:
        folders = string_list(raw)
    except ValueError as exc:
        raise ConfigError(f"bad value {raw!r} for {TRUSTED_PROJECTS!r}: {exc}", key=TRUSTED_PROJECTS,
                          source=str(source)) from exc
    return tuple(Path(f).expanduser().resolve() for f in folders)


def _project_layer(path: Path | None, trusted: tuple[Path, ...], user_path: Path):
    """The project file's layer, or None when it is ignored; ConfigError when it sets a key only
    the user's own config may set, in a folder the user does not trust."""
    if path is None:
        return None
    why = _untrusted(path)
    if why:
        log.warning("spmd: ignoring %s: %s; a project's config must be your own file in a "
                    "folder only you can write", path, why)
        return None
    top, profiles, selected = _file_layer(path)
    folder = path.parent.resolve()
    if any(folder == t or t in folder.parents for t in trusted):
        return top, profiles, selected
    for where, values in [("", top), *((f" [profiles.{n}]", v) for n, v in profiles.items())]:
        for name in values:
            if name in USER_ONLY or name == TRUSTED_PROJECTS:
                raise ConfigError(
                    f"a project file may not set {name!r} (it can run code or send your data "
                    f"elsewhere); set it in your own config file ({user_path}), or trust "
                    f"this project there: {TRUSTED_PROJECTS} = [{str(folder)!r}]", key=name,
                    source=f"{path}{where}")
    return top, profiles, selected


def _file_layer(path: Path | None) -> tuple[dict, dict[str, dict], str | None]:
    """(top-level keys, profiles, selected profile) of one config file."""
    if path is None or not path.is_file():
        return {}, {}, None
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("spmd", {})
    data = dict(data)
    profiles = data.pop("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise ConfigError("'profiles' must hold tables like [profiles.aws]", key="profiles",
                          source=str(path))
    selected = data.pop("profile", None)
    return data, profiles, selected


def resolve(explicit: Mapping[str, Any] | None = None, *, profile: str | None = None,
            keys: Iterable[Key] | None = None, cwd: Path | None = None,
            environ: Mapping[str, str] | None = None) -> Settings:
    """Merge every layer into Settings, checking each key and value against the declared keys.

    Without ``keys``, the schema is the core's keys plus the *selected* backend's: only that
    backend's package is imported. A top-level file key that the selected backend does not
    declare is skipped when another registered backend declares it (a shared file serves
    several profiles), and is an error otherwise; in a profile, the environment or an
    argument, it is an error.
    """
    environ = os.environ if environ is None else environ
    user_path = user_config_path(environ)
    user = _file_layer(user_path)
    trusted = _trusted_folders(user[0].pop(TRUSTED_PROJECTS, ()), user_path)
    project_path = project_config_path(cwd)
    project = _project_layer(project_path, trusted, user_path)
    layers_by_file = [(str(p), *layer) for p, layer in ((project_path, project), (user_path, user))
                      if layer is not None and p is not None]

    profile = profile or environ.get("SPMD_PROFILE") or next(
        (selected for _, _, _, selected in layers_by_file if selected), None)
    if profile and not any(profile in profiles for _, _, profiles, _ in layers_by_file):
        where = ", ".join(source for source, *_ in layers_by_file) or "no config file found"
        raise ConfigError(f"profile {profile!r} is not defined; add a [profiles.{profile}] table "
                          f"to spmd.toml or the user config file", key="profile", source=where)

    # File layers, lowest precedence first; later layers overwrite earlier ones.
    file_layers: list[tuple[str, Mapping[str, Any], bool]] = []  # (source, values, top-level?)
    for source, top, profiles, _ in reversed(layers_by_file):
        file_layers.append((source, top, True))
        if profile in profiles:
            file_layers.append((f"{source} [profiles.{profile}]", profiles[profile], False))
    arguments = {k: v for k, v in (explicit or {}).items() if v is not None}

    if keys is None:
        backend = _selected_backend(file_layers, environ, arguments)
        from .plugins import config_keys_of
        keys = (*CORE_KEYS, *config_keys_of(backend))
    else:
        backend = None
    schema = {key.name: key for key in keys}

    layers: list[tuple[str, Mapping[str, Any]]] = [("default", {k.name: k.default for k in schema.values()})]
    for source, values, top_level in file_layers:
        if backend is not None and top_level:
            values = {name: raw for name, raw in values.items()
                      if name in schema or not _declared_elsewhere(name, backend)}
        layers.append((source, values))
    env_values = {name: environ[ENV_PREFIX + name.upper()] for name in schema
                  if environ.get(ENV_PREFIX + name.upper())}
    layers.append(("environment", env_values))
    layers.append(("argument", arguments))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for name, raw in layer.items():
            key = schema.get(name)
            if key is None:
                raise ConfigError(_unknown_key_message(name, schema, backend), key=name, source=source)
            if raw is None:
                values.setdefault(name, None)
                continue
            try:
                values[name] = key.parse(raw)
            except ConfigError as exc:
                raise ConfigError(f"bad value for {name!r}: {exc}", key=name, source=source) from exc
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"bad value {raw!r} for {name!r}: {exc}", key=name,
                                  source=source) from exc
            sources[name] = source
    return Settings(profile=profile, values=values, sources=sources)


def _selected_backend(file_layers, environ: Mapping[str, str], arguments: Mapping[str, Any]) -> str:
    """The backend the layers select, parsed before any backend's keys are known."""
    chosen, source = CORE_KEYS[0].default, "default"
    candidates = [(s, v.get("backend")) for s, v, _ in file_layers]
    candidates += [("environment", environ.get(ENV_PREFIX + "BACKEND") or None),
                   ("argument", arguments.get("backend"))]
    for where, raw in candidates:
        if raw is not None:
            chosen, source = raw, where
    try:
        return text(chosen)
    except ValueError as exc:
        raise ConfigError(f"bad value {chosen!r} for 'backend': {exc}", key="backend",
                          source=source) from exc


def _declared_elsewhere(name: str, backend: str) -> str | None:
    """The other backend that declares key name, if any (loads other backends' keys: only
    reached for a key the selected backend does not know)."""
    from .plugins import backend_declaring
    return backend_declaring(name, exclude=backend)


def _unknown_key_message(name: str, schema: Mapping[str, Key], backend: str | None) -> str:
    known = ", ".join(sorted(schema))
    other = _declared_elsewhere(name, backend) if backend else None
    if other:
        return (f"configuration key {name!r} belongs to the {other} backend, but {backend!r} is "
                f"selected; set backend = {other!r} next to it, or remove it (keys of {backend}: "
                f"{known})")
    return f"unknown configuration key {name!r}; known keys: {known}"
