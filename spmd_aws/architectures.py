"""Which CPU an EC2 instance type has, so a profile whose instance types cannot run its
``architecture`` is refused at config load instead of failing every attempt on paid
instances ("exec format error").

EC2's names say it (Amazon EC2 "Instance type naming conventions"): a family is a class,
a generation and attributes, and the attribute ``g`` means AWS Graviton (m6g, c7gn,
x2gd, im4gn, g5g); ``a1`` is the first Graviton. Batch's bundles: ``optimal`` and
``default_x86_64`` are x86_64, ``default_arm64`` is Graviton. A name this cannot read is
left to EC2.
"""
from __future__ import annotations

import re

from spmd.errors import ConfigError

BUNDLES = {"optimal": "x86_64", "default_x86_64": "x86_64", "default_arm64": "arm64"}
_FAMILY = re.compile(r"^([a-z]+)(\d+)([a-z-]*)$")


def of_instance_type(name: str) -> str | None:
    """``x86_64`` or ``arm64`` for a bundle, family (``c6g``) or type (``c6g.large``);
    None when the name is not one EC2's conventions explain."""
    if name in BUNDLES:
        return BUNDLES[name]
    family = name.split(".", 1)[0].lower()
    if family == "a1":
        return "arm64"
    match = _FAMILY.match(family)
    if not match or family.startswith("mac"):
        return None
    return "arm64" if "g" in match.group(3) else "x86_64"


def check(architecture: str, instance_types: tuple[str, ...], fargate: bool, spot: bool) -> None:
    """ConfigError when the compute environment could not run tasks of ``architecture``."""
    if fargate:
        if spot and architecture == "arm64":
            raise ConfigError(
                "architecture = \"arm64\" with fargate and spot: Fargate Spot does not run ARM64 "
                "containers, and AWS Batch would block the job queue (\"RuntimePlatform\", AWS "
                "Batch). Set spot = false, or fargate = false with Graviton instance_types",
                key="architecture")
        return
    other = [t for t in instance_types if of_instance_type(t) not in (None, architecture)]
    if other:
        wanted = "Graviton ones such as c7g, m7g or default_arm64" if architecture == "arm64" \
            else "x86_64 ones such as c6i, m6i or optimal"
        raise ConfigError(
            f"instance_types {', '.join(other)} are not {architecture}, but architecture = "
            f"\"{architecture}\": every task would fail with \"exec format error\" on paid "
            f"instances. Set instance_types to {wanted}, or change architecture",
            key="instance_types")
