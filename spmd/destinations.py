"""Where each item's output files are published: ``map(items, outputs_to=TEMPLATE)``.

    "s3://lab-derivatives/dti/{subject}/"  +  item {"subject": "sub-01", ...}
        ──render──>  "s3://lab-derivatives/dti/sub-01/"

Fields are ``{index}`` (the item's position) and, for a dict item, its keys by name. Every
item is rendered on the client, so a field an item lacks fails at ``map()``, naming both.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import remote
from .errors import DataError


@dataclass(frozen=True)
class Destinations:
    """The rendered destination of every item, and the fsspec options to write them with."""

    template: str
    urls: list[str]
    options: dict = field(default_factory=dict)

    def of(self, index: int) -> str:
        return self.urls[index]

    def roots(self) -> list[str]:
        """The fixed folders the destinations are under (one per distinct prefix before a field)."""
        fixed = self.template.split("{", 1)[0]
        return [fixed[:fixed.rfind("/") + 1] or fixed]


def fields(template: str) -> list[str]:
    """The field names of a template; DataError when it is not a template of plain names."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DataError(f"outputs_to={template!r} is not a valid template ({exc}); use fields "
                        "like {index} or {subject}", path=template) from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or not name.isidentifier() or spec or conversion:
            raise DataError(f"outputs_to={template!r}: field {{{name}}} must be a plain name "
                            "such as {index} or a key of the items", path=template)
        names.append(name)
    return names


def render(template: str, items: list[Any], options: Mapping[str, Any] | None = None) -> Destinations:
    """Every item's destination folder (ending in "/"); DataError naming an item without a field."""
    if not isinstance(template, str) or not template.strip():
        raise DataError(f"outputs_to={template!r} must be a URL or path such as "
                        "'s3://bucket/prefix/{index}/'", path=str(template))
    names = fields(template)
    if not remote.is_url(template):
        from pathlib import Path
        template = str(Path(template).expanduser().absolute()) + ("/" if template.endswith("/") else "")
    urls = []
    for index, item in enumerate(items):
        values: dict[str, Any] = {"index": index}
        if isinstance(item, Mapping):
            values.update({k: v for k, v in item.items() if isinstance(k, str) and k != "index"})
        elif hasattr(item, "kwargs") and isinstance(getattr(item, "kwargs"), Mapping):
            values.update(item.kwargs)
        missing = [n for n in names if n not in values]
        if missing:
            raise DataError(f"outputs_to={template!r}: item {index} has no value for "
                            f"{{{missing[0]}}} (fields come from {{index}} and a dict item's "
                            "keys)", path=template)
        url = template.format(**{n: values[n] for n in names})
        urls.append(url if url.endswith("/") else url + "/")
    if len(set(urls)) < len(urls):
        seen: dict[str, int] = {}
        for index, url in enumerate(urls):
            if url in seen:
                raise DataError(f"outputs_to={template!r}: items {seen[url]} and {index} would both "
                                f"publish to {url}; add a field that tells them apart, such as "
                                "{index}", path=template)
            seen[url] = index
    return Destinations(template=template, urls=urls, options=dict(options or {}))
