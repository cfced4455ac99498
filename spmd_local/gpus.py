"""GPUs on the local Docker engine: how many a task may be given, and the request for them.

A GPU reaches a container through NVIDIA's container toolkit (Docker's ``nvidia`` runtime,
and device requests with the ``gpu`` capability); without it, or without a device node, the
engine has none, and a map that asks for one is refused at map() (spmd.backend.Capacity)."""
from __future__ import annotations

import glob
import re


def count(engine_info: dict) -> int:
    """The NVIDIA GPUs this engine can give containers (0 without the toolkit's runtime)."""
    if "nvidia" not in (engine_info.get("Runtimes") or {}):
        return 0
    return len([p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", p)])


def device_requests(gpus: int) -> list:
    """What docker's containers.create gets for a task of ``gpus`` GPUs ([] for none)."""
    if not gpus:
        return []
    from docker.types import DeviceRequest
    return [DeviceRequest(count=gpus, capabilities=[["gpu"]])]
