"""Knot: a function bound to its image, resources and backend; ``map`` runs it over items.

    map(items) ──> pickle function + calls (fail fast, naming the culprit)
               ──> check resources, choose chunksize ──> ensure image (hash tag)
               ──> write function, input shards, manifest ──> submit one array ──> Job
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..images import apt, build as image
from . import budget, chain, staging
from .. import codec, data, layout, protocol, remote, reuse as _reuse, shards
from .args import as_call
from ..backend import Backend, Capacity
from ..plugins import open_backend, task_runtime
from ..batch_queue import ArraySpec, Resources
from ..config import Settings, resolve
from ..destinations import render as render_destinations
from .job import Job
from ..layout import Manifest
from ..errors import ConfigError, ResourceError
from ..secrets import Secret, check as check_secrets
from ..upstream import Upstream as upstream_ref, references
from ..units import format_bytes, parse_memory

log = logging.getLogger("spmd")

WORKER_COMMAND = ("python3", "-m", "spmd.task.worker")
TASKS_PER_SLOT = 4  # chunksize=None aims at this many tasks per parallel slot


class Knot:
    """Runs ``func`` over many inputs in containers on a backend (local Docker, AWS Batch, ...).

    Constructing a Knot checks its arguments and reads the configuration; it starts
    nothing and calls no service. ``config`` holds backend settings (e.g. ``store_dir``,
    ``region``) with the highest precedence; ``profile`` picks a named profile.
    """

    def __init__(self, func: Callable, *, backend: str | None = None,
                 requirements: Sequence[str] = (), base_image: str | None = None,
                 system_packages: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, vcpus: float = 1,
                 memory: str | int | Sequence[str | int] = "2GiB", timeout: float | None = None, retries: int = 0,
                 infra_retries: int = 3, name: str | None = None, profile: str | None = None,
                 config: Mapping[str, Any] | None = None, network: bool | None = None,
                 secrets: Sequence[Secret] = (), gpus: int = 0):
        if not callable(func):
            raise TypeError(f"Knot needs a callable, got {type(func).__name__}: {func!r:.80}")
        if isinstance(requirements, str):
            requirements = [requirements]
        bad = [r for r in requirements if not isinstance(r, str) or not r.strip()]
        if bad:
            raise ValueError(f"requirements must be strings like 'numpy==2.1', got {bad!r}")
        if isinstance(system_packages, str):
            system_packages = [system_packages]
        self.system_packages = apt.check_names(system_packages)
        env = dict(env or {})
        bad_env = {k: v for k, v in env.items() if not isinstance(k, str) or not isinstance(v, str)}
        if bad_env:
            raise ValueError(f"env must map strings to strings; fix {bad_env!r}")
        if isinstance(vcpus, bool) or not isinstance(vcpus, (int, float)) or vcpus <= 0:
            raise ValueError(f"vcpus={vcpus!r} must be a number above zero")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout={timeout!r} must be a number of seconds above zero, or None")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries={retries!r} must be a whole number, 0 or more")
        if isinstance(infra_retries, bool) or not isinstance(infra_retries, int) or infra_retries < 0:
            raise ValueError(f"infra_retries={infra_retries!r} must be a whole number, 0 or more")
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise ValueError(f"gpus={gpus!r} must be a whole number of GPUs per task, 0 or more")
        self.func = func
        self.name = name or getattr(func, "__name__", "job")
        self.requirements = tuple(r.strip() for r in requirements)
        self.env = env
        self.secrets = check_secrets(secrets, env)
        sizes = memory_sizes(memory)
        self.resources = Resources(vcpus=float(vcpus), memory=sizes[0],
                                   timeout=float(timeout) if timeout else None, retries=retries,
                                   infra_retries=infra_retries, more_memory=sizes[1:], gpus=gpus)
        self.settings: Settings = resolve({**(config or {}), "backend": backend,
                                           "base_image": base_image}, profile=profile)
        self.backend: Backend = open_backend(self.settings)
        if network is not None and not isinstance(network, bool):
            raise ValueError(f"network={network!r} must be True or False (or None: the config's)")
        # Tasks get no network unless asked: the local store is a bind mount.
        self.network = bool(self.settings.get("network")) if network is None else network

    def __repr__(self) -> str:
        return f"<spmd.Knot {self.name} on {self.settings.backend}>"

    def image_spec(self) -> image.ImageSpec:
        """What the task image holds: the same for every built-in backend (``task_runtime``)."""
        requirements, packages = task_runtime(self.settings.backend)
        return image.ImageSpec(
            base_image=self.settings.get("base_image"),
            requirements=self.requirements,
            runtime_requirements=image.pinned(tuple(sorted(set(image.CORE_RUNTIME + requirements)))),
            runtime_packages=tuple(sorted(set(image.CORE_PACKAGES + packages))),
            system_packages=self.system_packages, debian_mirror=self.settings.get("debian_mirror"),
            platform=self.backend.image_platform())

    def ensure_image(self) -> image.TaskImage:
        """The task image, built and published only if its content tag is missing."""
        command_image = getattr(self.func, "image", None) if _is_command(self.func) else None
        if command_image:
            return image.ensure_for_command(command_image, self.image_spec(), self.backend.registry)
        return image.ensure(self.image_spec(), self.backend.registry)

    def _check_command_image(self) -> None:
        if _is_command(self.func) and self.func.image and not type(self.backend).uses_images:
            from ..errors import CommandSpecError
            raise CommandSpecError(
                f"backend {self.settings.backend!r} runs tasks without container images, so "
                f"Command(image={self.func.image!r}) cannot apply there; drop image= to run the "
                "command from the task's own environment, or use a backend with images (local, aws)")

    def parallelism(self, capacity: Capacity) -> int:
        """How many tasks of this Knot the backend runs at once."""
        return capacity.slots(self.resources, self.settings.backend)

    def map(self, items: Iterable[Any], *, chunksize: int | None = None,
            starmap: bool = False, reuse: bool = False, outputs_to: str | None = None,
            outputs_options: Mapping[str, Any] | None = None,
            max_failures: int | float | None = None, max_parallel: int | None = None) -> Job:
        """Run the function over items in containers; returns a Job at once.

        ``reuse=True`` takes each item's result from an earlier map of the same function,
        image and env over an equal item, where one succeeded, and runs only the others; a
        rerun of a job that is still running attaches to it (spmd.reuse).
        ``outputs_to="s3://bucket/prefix/{index}/"`` publishes each item's ``spmd.outputs()``
        files there instead of the job's store (fields: ``{index}`` and a dict item's keys;
        ``outputs_options`` are the fsspec options to write with).
        ``max_failures`` (a count, a fraction of the items, or math.inf) cancels the items
        that have not started once more items than that failed; by default, once the first
        10 items to end all failed with one error type (spmd.client.budget).
        ``max_parallel=N`` never runs more than N tasks of this map at once.
        """
        self.backend.store.check_owner()  # (made here: a bad share_with_group is refused now)
        upstream = chain.upstream_job(items)
        if upstream is not None:
            items = self._chained_items(upstream, chunksize, starmap)
            chunksize = upstream.manifest.chunksize
        items = list(items)
        failure_limit = budget.limit_of(max_failures, len(items))
        calls = [as_call(item, starmap) for item in items]
        upstream = upstream or chain.referenced_job(calls)
        if upstream is not None:
            chain.check_same_store(upstream, self.backend.store)
        rule = type(self.backend).data_rule
        destinations = None
        if outputs_to is not None:
            options = remote.check_options(str(outputs_to), dict(outputs_options or {}))
            destinations = render_destinations(outputs_to, items, options)
        if chunksize is not None and (isinstance(chunksize, bool) or not isinstance(chunksize, int)
                                      or chunksize < 1):
            raise ValueError(f"chunksize={chunksize!r} must be a whole number, 1 or more, or None")
        if not isinstance(reuse, bool):
            raise ValueError(f"reuse={reuse!r} must be True or False")
        if max_parallel is not None and (isinstance(max_parallel, bool)
                                         or not isinstance(max_parallel, int) or max_parallel < 1):
            raise ConfigError(f"max_parallel={max_parallel!r} must be a whole number, 1 or more "
                              f"(tasks of this map at once), or None for no cap", key="max_parallel")

        codec.register_local_modules(set(task_runtime(self.settings.backend)[1]))
        self._check_command_image()
        self._check_memory_sizes()
        if self.secrets and not type(self.backend.queue).takes_secrets:
            raise ConfigError(f"secrets: the {self.settings.backend} backend cannot pass secrets "
                              f"to its tasks; leave them out")
        if max_parallel is not None and not type(self.backend.queue).caps_parallel:
            raise ConfigError(f"max_parallel={max_parallel}: the {self.settings.backend} backend "
                              f"cannot cap how many tasks of a map run at once; leave it out",
                              key="max_parallel")
        slots = min(self.parallelism(self.backend.capacity()), max_parallel or math.inf)
        # Files become content-addressed references; the function is wrapped to stage them
        # in the task and to store its outputs folder (spmd/client/staging.py).
        function, staged, uploads = staging.prepare(
            self.func, calls, in_place=self.backend.shared_path, destinations=destinations,
            publish=rule.outputs == "task")
        url_refs = list(uploads._remote.values())
        self.backend.check_data(url_refs, destinations)
        if destinations is not None:
            for root in destinations.roots():
                remote.check_writable(root, destinations.options)
        # An item's key holds its inputs' versions (in its UrlRefs) and its destination.
        keys = [_reuse.item_key(staging.dumps_calls(
                    [(args[1:] + ((destinations.of(i),) if destinations else ()), kwargs)],
                    [calls[i]], [i]))
                for i, (args, kwargs) in enumerate(staged)] if reuse else []

        chained = upstream is not None and upstream.manifest.n_items == len(calls) and all(
            references(call) == [(upstream.id, i)] for i, call in enumerate(calls))
        spread = chunksize is None and not chained

        def plan(run: list[int]) -> tuple[int, list]:
            size = chunksize or max(1, math.ceil(len(run) / (slots * TASKS_PER_SLOT)))
            order = layout.dealt(run, size) if spread else run
            return size, [staging.dumps_calls([staged[i] for i in order[j:j + size]],
                                              [calls[i] for i in order[j:j + size]],
                                              order[j:j + size])
                          for j in range(0, len(order), size)]

        run = chain.task_order(upstream.manifest) if chained else list(range(len(calls)))
        if not reuse:  # (with reuse, the keys above pickled every item already)
            size, payloads = plan(run)  # every item pickled before anything is built or written

        if type(self.backend).uses_images:
            task_image = self.ensure_image()
        else:
            self.backend.prepare_environment(self.image_spec())
            task_image = image.TaskImage(reference="", tag="", built=False)
        store = self.backend.store
        key, found = "", _reuse.Found()
        if reuse:
            tag = task_image.tag or image.content_tag(self.image_spec(), "no image")
            key = _reuse.reuse_key(function, tag, self.env, self.func)
            found = _reuse.find(self.backend, key, keys)
            if found.attach:
                log.info("job %s runs these very items; attaching to it", found.attach)
                from .job import load
                return load(self.backend, found.attach)
            run = [i for i in run if i not in found.results]
            size, payloads = plan(run)
        data.send(store, uploads)  # only what the store lacks, after every check has passed
        if rule.inputs == "client":
            data.stage_for_tasks(store, uploads)
        job_id = layout.new_job_id(self.name)
        data.record_uploads(store, job_id, uploads)  # spmd clean removes what no job references
        per_shard = shards.plan([codec.frame_size(p) for p in payloads])
        manifest = Manifest(job_id=job_id, name=self.name, backend=self.settings.backend,
                            profile=self.settings.profile, n_items=len(calls), chunksize=size,
                            tasks_per_shard=per_shard, image=task_image.reference,
                            resources=self.resources,
                            items=run if run != list(range(len(calls))) else None, reuse_key=key,
                            outputs_to=destinations.template if destinations else "",
                            data_rule=[rule.inputs, rule.outputs], max_failures=failure_limit,
                            after=upstream.id if upstream else "", chained=chained,
                            spread=spread and size > 1)
        if url_refs or destinations is not None:
            store.put_json(layout.data_key(job_id),
                           data.job_data(staged, url_refs, destinations))
        store.put(layout.function_key(job_id), function)
        if self.backend.inputs_in_memory:
            store.keep_in_memory(layout.input_prefix(job_id),
                                 sum(codec.frame_size(p) for p in payloads))
        for shard, start in enumerate(range(0, len(payloads), per_shard)):
            store.put_parts(layout.shard_key(job_id, shard),
                            shards.pack_parts(payloads[start:start + per_shard]))
        if found.results:
            _reuse.save_reused(store, job_id, found.results)
        store.put(layout.manifest_key(job_id), manifest.to_json())
        if reuse:
            _reuse.record(store, key, job_id, keys)

        handle = ""
        if payloads:
            env = {**self.env, protocol.STORE_URL: store.url, protocol.JOB_ID: job_id}
            if self.secrets:
                env.update(self.backend.queue.deliver_secrets(job_id, self.secrets))
            handle = self.backend.queue.submit(ArraySpec(
                job_id=job_id, image=task_image.reference, command=WORKER_COMMAND,
                n_tasks=len(payloads), resources=self.resources, env=env, network=self.network,
                max_parallel=max_parallel, **self._after(upstream, calls, run, size)))
            store.put_json(layout.queue_key(job_id), {"handle": handle})
        log.info("job %s: %d items (%d reused) in %d tasks of up to %d, image %s", job_id,
                 len(calls), len(found.results), len(payloads), size, task_image.reference)
        job = Job(self.backend, manifest, handle)
        job.uploads = uploads
        return job


    def _chained_items(self, upstream: Job, chunksize: int | None, starmap: bool) -> list:
        """A chained map's items: each upstream item's result (spmd.client.chain), refused early where
        the chain cannot hold."""
        if starmap:
            raise ConfigError("starmap=True with a chained map: each item is the upstream item's "
                              "result, passed as one argument; unpack it in the function")
        if chunksize is not None and chunksize != upstream.manifest.chunksize:
            raise ConfigError(f"chunksize={chunksize}: a chained map keeps job {upstream.id}'s "
                              f"chunks ({upstream.manifest.chunksize} items per task), so each "
                              f"task waits for one upstream task; leave chunksize out")
        if not upstream.handle and upstream.manifest.submitted:
            raise ConfigError(f"job {upstream.id} was never submitted: nothing to chain to")
        if type(self.backend.queue) is not type(upstream.backend.queue):
            raise ConfigError(f"job {upstream.id} runs on another backend: chain maps of one "
                              f"backend and profile")
        return [upstream_ref(upstream.id, i) for i in range(upstream.manifest.n_items)]

    @staticmethod
    def _after(upstream: Job | None, calls: list, run: list[int], size: int) -> dict:
        """ArraySpec's chain fields: which upstream tasks each task waits for."""
        if upstream is None:
            return {}
        waits = chain.after_tasks(upstream.manifest, calls, run, size)
        return {"after_job": upstream.id, "after_handle": upstream.handle,
                "after_tasks": tuple(tuple(w) for w in waits)}

    def _check_memory_sizes(self) -> None:
        if self.resources.more_memory and not type(self.backend.queue).grows_memory:
            raise ResourceError(
                f"memory={[format_bytes(m) for m in self.resources.memory_sizes]}: the "
                f"{self.settings.backend} backend cannot run a task again with more memory; "
                "give one size")


def memory_sizes(memory: str | int | Sequence[str | int]) -> tuple[int, ...]:
    """One size, or ascending sizes (each attempt killed for its memory gets the next), in
    bytes; ConfigError naming the size that is wrong."""
    if isinstance(memory, (str, int)):
        return (parse_memory(memory),)
    if not isinstance(memory, Sequence) or not memory:
        raise ConfigError(f"memory={memory!r} must be a size like '2GiB', or a list of "
                          "ascending sizes like ['2GiB', '4GiB', '8GiB']", key="memory")
    sizes = tuple(parse_memory(m, key=f"memory[{i}]") for i, m in enumerate(memory))
    for i in range(1, len(sizes)):
        if sizes[i] <= sizes[i - 1]:
            raise ConfigError(
                f"memory={list(memory)!r}: each size must be larger than the one before it "
                f"(memory[{i}] = {memory[i]!r} is not larger than {memory[i - 1]!r}); "
                "list them smallest first", key="memory")
    return sizes


def _is_command(func: Callable) -> bool:
    from .command import Command
    return isinstance(func, Command)


def attach(job_id: str, *, backend: str | None = None, profile: str | None = None,
           config: Mapping[str, Any] | None = None, watch: bool = True) -> Job:
    """The Job of job_id, rebuilt from the store (in this or any other process)."""
    from .job import load
    settings = resolve({**(config or {}), "backend": backend}, profile=profile)
    return load(open_backend(settings), job_id, watch=watch)
