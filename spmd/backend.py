"""Backend: a named bundle of the three interfaces, created from resolved settings.

A backend class declares its configuration keys and what its workers need inside the
task image; it makes its store, registry and queue lazily, so constructing one has no
side effects and makes no network calls.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from .batch_queue import BatchQueue, Resources
from .keys import Key, Settings
from .errors import ResourceError
from .image_registry import ImageRegistry
from .stores.object_store import ObjectStore
from .units import format_bytes

if TYPE_CHECKING:
    from typing import Iterator

    from .checks import Check
    from .report import CostEstimate, Report


@dataclass(frozen=True)
class DataRule:
    """Who moves the bytes of URL inputs and of outputs published with ``outputs_to``.

    inputs   "task": each task fetches its own (it has network and credentials: AWS's job role);
             "host": the job's scheduler on this machine fetches them once per version into the
             store's cache, which tasks see read-only (local: tasks keep no network);
             "client": ``map()`` fetches them into the store's cache on a shared filesystem
             (Slurm: the login node has the network that compute nodes may lack).
    outputs  "task": the task writes to the destination; "host": the task writes to the store
             and the scheduler publishes, before the queue says the task ended.
    """

    inputs: str = "task"
    outputs: str = "task"


@dataclass(frozen=True)
class Capacity:
    """What the backend can run at once, in total."""

    vcpus: float
    memory: int
    gpus: float = 0  # GPUs a task may be given (math.inf: the backend checks each request)

    def slots(self, resources: Resources, backend: str) -> int:
        """How many such tasks fit at once (at their largest memory size); ResourceError when
        not even one does."""
        if resources.gpus > self.gpus:
            raise ResourceError(
                f"a task asks for {resources.gpus} GPU{'s' if resources.gpus > 1 else ''}, but "
                f"the {backend} backend has {self.gpus:g} here; ask for none (gpus=0), or run "
                f"on a backend with GPUs (aws with GPU instance_types, slurm with gres=gpu)")
        memory = max(resources.memory_sizes)
        if resources.vcpus > self.vcpus or memory > self.memory:
            raise ResourceError(
                f"a task asks for {resources.vcpus:g} vcpus and {format_bytes(memory)}, "
                f"but the {backend} backend has at most {self.vcpus:g} vcpus and "
                f"{format_bytes(self.memory)}; ask for less or raise max_vcpus/max_memory")
        return max(1, math.floor(min(self.vcpus / resources.vcpus, self.memory / memory)))


class Backend(ABC):
    """Base class of every backend; subclasses make the three parts and state their capacity."""

    name: ClassVar[str] = ""
    config_keys: ClassVar[tuple[Key, ...]] = ()
    #: pip requirements the worker needs in the image besides the core's (e.g. boto3).
    runtime_requirements: ClassVar[tuple[str, ...]] = ()
    #: importable packages copied into the image beside ``spmd`` (e.g. the backend's store).
    runtime_packages: ClassVar[tuple[str, ...]] = ()
    #: seconds between checks for finished tasks, unless configured.
    poll_interval: ClassVar[float] = 1.0
    #: seconds between checks right after submit and after a check that saw the job move,
    #: doubling while nothing moves up to poll_interval (spmd.client.job); None: always
    #: poll_interval (a queue whose checks cost API calls keeps its pace)
    poll_fast: ClassVar[float | None] = None
    #: False for a backend that runs tasks without container images (e.g. local processes):
    #: then no image is built and ``make_registry`` may raise NotImplementedError.
    uses_images: ClassVar[bool] = True
    #: True where tasks run on this machine and see its /dev/shm (local): a job's input
    #: shards are kept in memory while it runs (ObjectStore.keep_in_memory), not on disk
    inputs_in_memory: ClassVar[bool] = False
    #: who moves data that lives elsewhere (URLs in, ``outputs_to`` out)
    data_rule: ClassVar[DataRule] = DataRule()

    def __init__(self, settings: Settings):
        self.settings = settings

    @abstractmethod
    def make_store(self) -> ObjectStore:
        """The object store jobs of this backend use."""

    @abstractmethod
    def make_registry(self) -> ImageRegistry:
        """Where task images are published."""

    @abstractmethod
    def make_queue(self) -> BatchQueue:
        """Where arrays of tasks run."""

    @abstractmethod
    def capacity(self) -> Capacity:
        """The most CPU and memory all running tasks may use together."""

    def prepare_environment(self, spec) -> None:
        """Called by ``map`` before it submits when ``uses_images`` is False, with the ImageSpec
        an image would have been built from: make the environment tasks run in match it
        (e.g. a venv on a shared filesystem). By default there is nothing to prepare."""

    def shared_path(self, path) -> bool:
        """Whether tasks read this path of the client's where it is (a shared filesystem), so
        ``spmd.File(path)`` is passed as it is, not uploaded. By default: no."""
        return False

    def check_data(self, inputs: list, destinations) -> None:
        """Refuse, before anything is submitted, data tasks could not reach (``inputs``: the map's
        UrlRefs; ``destinations``: its Destinations or None). By default everything is allowed."""

    def doctor_checks(self) -> "Iterator[Check]":
        """``spmd doctor``'s checks of this backend beyond its store (spmd.client.doctor): what a
        first run needs, each failure with what to do. By default there are none."""
        return iter(())

    @cached_property
    def store(self) -> ObjectStore:
        return self.make_store()

    @cached_property
    def registry(self) -> ImageRegistry:
        return self.make_registry()

    @cached_property
    def queue(self) -> BatchQueue:
        return self.make_queue()

    def estimate_cost(self, report: "Report") -> "CostEstimate | None":
        """What the job of a run report cost, estimated; None where nothing is billed (local)."""
        return None

    def describe(self) -> str:
        """One line for logs and error messages."""
        return f"{self.name} backend"

    def image_platform(self) -> str | None:
        """The platform task images are built for ("linux/amd64", "linux/arm64"); None: the
        engine's own (containers on this engine)."""
        return None

