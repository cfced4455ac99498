"""SlurmBackend: tasks are Slurm array tasks; the store is a directory on the shared filesystem.

    [profiles.hpc]
    backend = "slurm"
    shared_dir = "/scratch/me/spmd"    # seen at the same path by the login and compute nodes
    partition = "normal"               # optional, like account, time and sbatch_options
    runtime = "python"                 # or "charliecloud", "docker": the task image
    shared_paths = ["/scratch", "/project"]   # optional: files there are passed as they are

With ``runtime = "python"`` (the default) no image is built: ``map`` makes (once per
content hash) a venv under ``shared_dir/envs/`` with the Knot's requirements, and tasks
run its interpreter (``environment.py``). ``python = "/path/bin/python"`` runs an existing
interpreter instead, as is. With ``runtime = "charliecloud"`` or ``"docker"`` the task image
is built as for the local backend and each task runs it (``runtimes.py``).

Data (``DataRule(inputs="client", outputs="task")``): an ``spmd.File`` under
``shared_paths`` or ``shared_dir`` reaches the task as the very same path, uploaded
nowhere (``paths.py``); a URL input is fetched by ``map()`` on the login node, which has the
network compute nodes often lack, into ``shared_dir``'s cache once per version; tasks
publish ``outputs_to`` destinations themselves (a shared folder, or S3 from nodes with
network).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from spmd import config, remote
from spmd.images import build as image
from spmd.backend import Backend, Capacity, DataRule
from spmd.config import Key, Settings
from spmd.errors import ConfigError, DataError
from spmd.images.build import LOCAL_REPOSITORY
from spmd.image_registry import ImageRegistry

from . import environment, paths, runtimes
from .queue import SlurmQueue
from .script import STOP_WARNING, Options
from .store import DirectoryStore

RUNTIMES = ("python", "docker", "charliecloud")
#: What a task needs to publish to s3:// itself (outputs "task"), pinned like every runtime
#: requirement to this client's versions: aiobotocore's narrow botocore pin then meets boto3's
#: (the aws backend's) without pip backtracking. The same pair as the aws backend's, so the
#: docker runtime's image keeps the built-ins' tag. Carried only when this client has s3fs:
#: without it no map can name s3:// at all (spmd.File and outputs_to check on the client).
S3_RUNTIME = ("s3fs", "aiobotocore") if importlib.util.find_spec("s3fs") else ()


def slurm_time(value) -> str:
    """A Slurm time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    text = config.text(str(value))
    if not re.fullmatch(r"(\d+-)?\d+(:\d{1,2}){0,2}", text) or text in ("0",):
        raise ValueError("expected a Slurm time limit such as 30, 2:00:00 or 1-00:00:00")
    return text


#: a Slurm partition, account or QoS name: nothing a batch script line could be made of
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
#: what a path spmd writes into the batch script may not hold (a line break ends a line)
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\"'`$\\]")


def slurm_name(value) -> str:
    """A partition, account or QoS: one Slurm name (``normal``, ``lab-42``)."""
    text = config.text(value)
    if not NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a Slurm name (letters, digits, '_', '.', '-', '+'), "
                         "such as \"normal\"")
    return text


def slurm_names(value) -> str:
    """A partition list: Slurm names separated by commas (``short,long``)."""
    text = config.text(value)
    if not all(NAME.fullmatch(name) for name in text.split(",")):
        raise ValueError(f"{text!r} is not a Slurm partition name or a list of them separated "
                         "by commas, such as \"normal\" or \"short,long\"")
    return text


def sbatch_option(value) -> tuple[str, ...]:
    """More #SBATCH options: each one option (``--qos=short``) on one line."""
    options = config.string_list(value)
    for option in options:
        if not option.startswith("-") or not option.isprintable():
            raise ValueError(f"{option!r} is not one sbatch option on one line, such as "
                             "\"--constraint=avx2\"")
    return options


def script_path(value) -> str:
    """An absolute path that goes into the batch script: no line breaks, quotes or $."""
    text = os.path.expanduser(config.text(value))
    if not os.path.isabs(text):
        raise ValueError(f"{text!r} must be an absolute path (every node resolves it alike)")
    if UNPRINTABLE.search(text):
        raise ValueError(f"{text!r} holds a control character, a quote, '$' or '\\', which "
                         "spmd does not write into a batch script; choose another path")
    return text


def runtime(value) -> str:
    text = config.text(value).lower()
    if text not in RUNTIMES:
        raise ValueError(f"expected one of {', '.join(RUNTIMES)}")
    return text


class SlurmBackend(Backend):
    """Runs each map as Slurm array jobs; needs Slurm's commands and a shared directory."""

    name = "slurm"
    config_keys = (
        Key("shared_dir", script_path, "directory on the cluster's shared filesystem (scratch) "
            "seen at the same path by every node: the store, logs and task environments"),
        Key("partition", slurm_names, "Slurm partition (sbatch --partition; default: the "
            "cluster's default partition)"),
        Key("account", slurm_name, "Slurm account to charge (sbatch --account)"),
        Key("qos", slurm_name, "Slurm quality of service (sbatch --qos)"),
        Key("time", slurm_time, "Slurm time limit of a task without a timeout (sbatch --time; "
            "default: the partition's)"),
        Key("sbatch_options", sbatch_option, "more #SBATCH options, e.g. "
            "[\"--qos=short\", \"--constraint=avx2\"]"),
        Key("runtime", runtime, "how tasks run: 'python' (a venv on shared_dir), "
            "'charliecloud' (the task image, unprivileged, in the job's cgroup) or 'docker'",
            "python"),
        Key("python", script_path, "an interpreter on the shared filesystem to run tasks with, "
            "as is, instead of the venv spmd makes"),
        Key("array_size", config.positive_int, "split arrays at this many tasks (at most the "
            "cluster's MaxArraySize)"),
        Key("stop_warning", config.positive_int, "seconds before a task's time limit Slurm "
            "tells it to stop (sbatch --signal=B:USR1@N): it saves spmd.checkpoint_dir() and is "
            f"requeued (default {STOP_WARNING}; tasks with a timeout get no warning)"),
        Key("shared_paths", paths.shared_paths, "shared filesystems every node sees at the same "
            "path, e.g. [\"/scratch\", \"/project\"]: an spmd.File there is passed as it is, "
            "not copied, and outputs_to may name a folder there (shared_dir counts too)", ()),
    )
    # the directory store's, and s3fs for tasks that publish outputs_to="s3://..."
    runtime_requirements = ("apache-libcloud", "fasteners", *S3_RUNTIME)
    runtime_packages = ("spmd", "spmd_slurm")
    uses_images = False
    poll_interval = 1.0
    # The login node (the client) has the network; compute nodes often do not: map() stages
    # URL inputs into shared_dir once per version. Tasks write outputs_to destinations.
    data_rule = DataRule(inputs="client", outputs="task")

    def __new__(cls, settings: Settings):
        if cls is SlurmBackend and settings.get("runtime") in ("docker", "charliecloud"):
            cls = SlurmContainerBackend
        return super().__new__(cls)

    def __init__(self, settings: Settings):
        super().__init__(settings)
        shared = settings.get("shared_dir")
        if not shared:
            raise ConfigError("the slurm backend needs shared_dir: a directory every node sees "
                              "at the same path, e.g. shared_dir = \"/scratch/<you>/spmd\" in "
                              "[profiles.hpc]", key="shared_dir")
        if not Path(shared).expanduser().is_absolute():
            raise ConfigError(f"shared_dir = {shared!r} must be an absolute path (every node "
                              "resolves it alike)", key="shared_dir")
        self.shared_dir = Path(shared).expanduser()
        self.shared = paths.SharedPaths([*(settings.get("shared_paths") or ()), self.shared_dir])

    def options(self) -> Options:
        get = self.settings.get
        return Options(partition=get("partition"), account=get("account"), qos=get("qos"),
                       time=get("time"),
                       sbatch_options=tuple(get("sbatch_options") or ()), runtime=get("runtime"),
                       python=get("python") or "python3", shared_dir=str(self.shared_dir),
                       mounts=paths.SharedPaths(get("shared_paths") or ()).mounts(),
                       stop_warning=get("stop_warning") or STOP_WARNING)

    def shared_path(self, path) -> bool:
        """True for a path under ``shared_paths`` or ``shared_dir`` (as written and resolved):
        every node sees it at the same place, so an ``spmd.File`` of it is not uploaded."""
        return path in self.shared

    def check_private(self) -> None:
        """Make shared_dir private (0700) if it is new; refuse one that other users can read or
        write (ConfigError with the chmod to run): it holds every job's inputs, results, logs
        and the pickles that tasks and the client load."""
        try:
            self.shared_dir.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            pass
        mode = self.shared_dir.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(
                f"shared_dir {str(self.shared_dir)!r} can be {'written' if mode & 0o022 else 'read'}"
                f" by other users (mode {mode:04o}): every job's data, results and the pickles spmd "
                f"loads are there. Run: chmod go-rwx {shlex.quote(str(self.shared_dir))}",
                key="shared_dir")

    def check_data(self, inputs: list, destinations) -> None:
        """Refuse (at map()) a partition Slurm does not know, a ``time`` above its MaxTime, and
        an ``outputs_to`` folder that is not on a shared filesystem: each task would write it
        on its own node's disk, where neither the client nor other tasks look."""
        self.queue.partitions()  # a partition Slurm does not know: ConfigError
        self.queue.check_time(self.settings.get("time"), f"time = {self.settings.get('time')!r}")
        if destinations is None:
            return
        for url in destinations.urls:
            if not remote.is_url(url) and url not in self.shared:
                raise DataError(
                    f"outputs_to={destinations.template!r}: {url} is not on a shared filesystem "
                    f"(shared_paths = {list(self.settings.get('shared_paths') or ())}, shared_dir "
                    f"= {str(self.shared_dir)!r}); tasks run on compute nodes and would write "
                    "it on their own disks. Choose a folder under one of them, or add its "
                    "filesystem's mount point to shared_paths", path=url)

    def doctor_checks(self):
        from .doctor import checks
        return checks(self)

    def make_store(self) -> DirectoryStore:
        """The store under shared_dir, once shared_dir is known to be private (check_private),
        so nothing is written, nor any pickle read, in a folder other users can reach."""
        self.check_private()
        return DirectoryStore(self.shared_dir / "store")

    def make_registry(self):
        raise NotImplementedError("with runtime = 'python' the slurm backend runs tasks in a "
                                  "Python environment, not an image; set runtime = 'docker' "
                                  "for containers")

    def make_queue(self) -> SlurmQueue:
        return SlurmQueue(self.store, self.options(), self.settings.get("array_size"),
                          self.settings.get("poll_interval") or self.poll_interval)

    def prepare_environment(self, spec: image.ImageSpec) -> None:
        """Make (once per content hash) the venv tasks run in, unless ``python`` names one."""
        if self.settings.get("python"):
            return
        python, built = environment.ensure(spec, self.shared_dir / "envs")
        self.queue.options = replace(self.queue.options, python=str(python))

    def capacity(self) -> Capacity:
        """The partition's nodes together (``sinfo``); one task must fit on one node, so
        ``gpus`` is the most one node has (Gres ``gpu:N``): a map asking for more, or for any
        on a partition without GPUs, is refused at map()."""
        nodes = self.queue.nodes()
        return Capacity(vcpus=float(sum(n.cpus for n in nodes)) or 1.0,
                        memory=sum(n.memory for n in nodes) or 1,
                        gpus=max((n.gpus for n in nodes), default=0))

    def describe(self) -> str:
        return f"slurm backend (shared_dir {self.shared_dir})"


class SlurmContainerBackend(SlurmBackend):
    """``runtime = "docker"`` or ``"charliecloud"``: each task runs the content-hashed task
    image, the very one local and AWS run (``runtimes.py``).

    The image is built in the client's Docker engine; the runtime publishes it for the nodes
    (Docker: the node's daemon, one node here; a real cluster pushes to a registry every node
    pulls from. Charliecloud: converted once per tag into ``shared_dir/images/``).
    """

    uses_images = True

    @cached_property
    def runtime(self) -> runtimes.Runtime:
        return runtimes.for_settings(self.settings.get("runtime"), self.shared_dir)

    def make_registry(self) -> RuntimeRegistry:
        return RuntimeRegistry(self.runtime)

    def check_data(self, inputs: list, destinations) -> None:
        """Also refuse, at map(), a runtime whose commands are not installed (naming the package)."""
        self.runtime.check()
        super().check_data(inputs, destinations)

    def prepare_environment(self, spec: image.ImageSpec) -> None:
        return None


class RuntimeRegistry(ImageRegistry):
    """Task images by content tag, as a runtime's nodes find them: ``spmd-task:<tag>`` in the
    client's engine, published by the runtime (for Charliecloud, a converted folder, so a
    tag converted once is found again without the engine having it)."""

    def __init__(self, runtime: runtimes.Runtime):
        self.runtime = runtime

    def reference(self, tag: str) -> str:
        return f"{LOCAL_REPOSITORY}:{tag}"

    def exists(self, tag: str) -> bool:
        return self.runtime.exists(self.reference(tag))

    def publish(self, local_image: str, tag: str) -> str:
        from spmd_local.registry import DaemonRegistry
        reference = DaemonRegistry().publish(local_image, tag)
        self.runtime.publish(reference)
        return reference
