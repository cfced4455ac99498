"""Configuration keys and resolved settings: what a key is, its parsers, the core's keys, and
the Settings a backend is made from. A leaf of the core (spmd.config reads files and
resolves; spmd.plugins finds backends' keys; spmd.backend declares them), re-exported by
spmd.config.
"""
from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .units import parse_memory


@dataclass(frozen=True)
class Key:
    """One configuration key: its name, how to parse a value, its default and a line of help."""

    name: str
    parse: Callable[[Any], Any]
    help: str
    default: Any = None


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def group_name(value: Any) -> str:
    """A Unix group's name (``share_with_group``); whether it exists is checked where it is used."""
    value = text(value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?", value):
        raise ValueError("expected the name of a Unix group (letters, digits, _ . -)")
    return value


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise ValueError("expected true or false")


def positive_int(value: Any) -> int:
    number = int(value)
    if isinstance(value, bool) or number <= 0 or (isinstance(value, float) and value != number):
        raise ValueError("expected a whole number above zero")
    return number


def positive_float(value: Any) -> float:
    number = float(value)
    if isinstance(value, bool) or number <= 0:
        raise ValueError("expected a number above zero")
    return number


# Characters that mean something to a shell, a Dockerfile or a config line.
_SHELL_SPECIAL = set("$`\\\"'|&;<>(){}[]*?!# \t\r\n")


def url(value: Any) -> str:
    """An http(s) URL with a host and no character a shell, a Dockerfile or apt would read
    as syntax (a mirror's URL reaches all three)."""
    value = text(value)
    bad = sorted(set(value) & _SHELL_SPECIAL) or [c for c in value if ord(c) < 32 or ord(c) > 126]
    if bad:
        raise ValueError(f"a URL may not hold {''.join(bad)!r}; expected http(s)://host/path")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    return value.rstrip("/")


# A Docker image reference: [host[:port]/]path[:tag][@digest] (distribution's grammar).
_IMAGE = re.compile(
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?)/)?"
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")


def image_reference(value: Any) -> str:
    """A Docker image reference (``python:3.11-slim``, ``host:5000/lab/img@sha256:...``); it
    goes into a Dockerfile's FROM line, so nothing else may ride along."""
    value = text(value)
    if not _IMAGE.match(value):
        raise ValueError("expected an image reference like python:3.11-slim or "
                         "registry.example.org:5000/lab/image:tag")
    return value


def memory(value: Any) -> int:
    return parse_memory(value)


def string_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings (or a comma-separated string)")
    return tuple(v.strip() for v in value)


CORE_KEYS: tuple[Key, ...] = (
    Key("backend", text, "which backend runs the tasks", "local"),
    Key("base_image", image_reference, "the image tasks start from (default python:<client X.Y>-slim)"),
    Key("poll_interval", positive_float, "seconds between checks for finished tasks"),
    Key("debian_mirror", url, "Debian mirror URL for system packages and bootstrap (default: this machine's apt's)"),
)


@dataclass(frozen=True)
class Settings:
    """Resolved configuration values and where each came from."""

    profile: str | None
    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    @property
    def backend(self) -> str:
        return self.values["backend"]

    def describe(self) -> str:
        """The resolved configuration as lines of `key = value  # source`."""
        lines = [f"# profile: {self.profile or '(none)'}"]
        for key in sorted(self.values):
            value = self.values[key]
            if value is not None:
                lines.append(f"{key} = {redact(value)!r}  # {self.sources.get(key, 'default')}")
        return "\n".join(lines)


_URL_SECRET = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]+@")


def redact(value: Any) -> Any:
    """value with the password of any URL in it (``https://user:token@host``) hidden."""
    if isinstance(value, str):
        return _URL_SECRET.sub(lambda m: f"{m['scheme']}{m['user']}:***@", value)
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    return value
