"""The run report of a job: one row per item, with provenance, lost tasks included.

    outputs (provenance of the last attempt) ─┐
    queue states (state, attempts, reason,    ├─> ItemReport per item ──> Report
      start/end of the last attempt)          │     .to_pandas()  .plot("timeline.png")
    logs (why earlier attempts ended)        ─┘     .cost (the backend's estimate, if any)

A task that left no output (killed, out of memory, ``os._exit``) still has a row: its
times come from the queue, its reasons from the queue and the log. The image digest is
resolved once per report from the registry, or from the Docker engine that holds the image.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from . import codec, layout, protocol
from .batch_queue import CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, TaskStatus
from .errors import ResultDamaged
from .protocol import TaskOutput
from .units import format_bytes

if TYPE_CHECKING:
    from .client.job import Job

#: bar colours of the timeline, by state
COLOURS = {SUCCEEDED: "#2ca02c", FAILED: "#d62728", CANCELLED: "#9467bd", RUNNING: "#1f77b4",
           PENDING: "#ff7f0e"}
REUSED_TASK = -1  # the task of a reused item's row: it ran in an earlier job
REQUEUED = protocol.REQUEUED[len("spmd: "):]  # how a requeued attempt's reason begins
_ATTEMPT_HEADER = re.compile(r"^--- spmd: attempt (\d+) ---$", re.MULTILINE)


@dataclass(frozen=True)
class ItemReport:
    """What happened to one item: when, where, with what, how often, and why it ended so."""

    item: int
    task: int
    state: str                      # the item's own: SUCCEEDED, FAILED (its call raised or
    #                                 its task was lost), CANCELLED, PENDING or RUNNING
    start: float | None             # epoch seconds the last attempt started
    end: float | None               # and ended
    attempts: int
    reasons: tuple[str, ...]        # why each attempt ended, first to last
    peak_memory: int | None         # bytes (the worker's peak RSS); None for a lost task
    host: str
    image: str                      # the reference the task ran
    image_digest: str               # its content digest (sha256:...), '' if it cannot be found
    error: str = ""                 # the item's exception (type: message), if any
    inputs: tuple[str, ...] = ()    # its URL inputs and shared paths, each "URL@version"
    outputs_to: str = ""            # where its output files were published ('': the store)
    lost: str = ""                  # how its task ended without output, as TaskStatus.lost
    #                                 ("oom", "timeout", "infrastructure", "error"; '': it did not)

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start

    @property
    def requeues(self) -> int:
        """Attempts that ended told to stop, their checkpoint saved (spmd.task.checkpoint)."""
        return sum(1 for reason in self.reasons if reason.startswith(REQUEUED))

    def why(self) -> str:
        """Why each attempt ended, numbered when there were several: ``attempt 1: requeued
        (walltime warning), checkpoint 12.0KiB saved in 0.1s; attempt 2: succeeded``."""
        if len(self.reasons) < 2:
            return "; ".join(self.reasons)
        return "; ".join(f"attempt {n}: {reason}" for n, reason in enumerate(self.reasons, 1))


@dataclass(frozen=True)
class CostEstimate:
    """A backend's estimate of what a job cost; an estimate, with the date of its prices."""

    dollars: float
    vcpu_seconds: float
    requests: int
    price_per_vcpu_hour: float
    prices_as_of: str
    note: str = ""

    def __str__(self) -> str:
        return (f"estimated cost ${self.dollars:.4f}: {self.vcpu_seconds:.0f} vCPU-seconds at "
                f"${self.price_per_vcpu_hour:g}/vCPU-hour + ~{self.requests} requests "
                f"(prices of {self.prices_as_of}; an estimate{', ' + self.note if self.note else ''})")


@dataclass
class Report:
    """Rows of ItemReport in input order, plus the backend's cost estimate when it makes one."""

    job_id: str
    rows: list[ItemReport]
    vcpus: float = 1.0
    memory: int = 0
    cost: CostEstimate | None = None
    #: the Job it was built from (its manifest and logs, for to_html); None for rows made by hand
    source: "Job | None" = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ItemReport]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> ItemReport:
        return self.rows[index]

    def tasks(self) -> list[ItemReport]:
        """One row per task (its first item's), in task order: what the timeline draws
        (reused items ran in earlier jobs: they have no task here)."""
        first: dict[int, ItemReport] = {}
        for row in self.rows:
            if row.task == REUSED_TASK:
                continue
            first.setdefault(row.task, row)
        return [first[t] for t in sorted(first)]

    def to_pandas(self):
        """The rows as a pandas DataFrame (start/end as UTC timestamps); needs pandas."""
        try:
            import pandas
        except ImportError as exc:
            raise ImportError("Report.to_pandas needs pandas: pip install pandas") from exc
        frame = pandas.DataFrame([asdict(row) for row in self.rows])
        for column in ("start", "end"):
            frame[column] = pandas.to_datetime(frame[column], unit="s", utc=True)
        return frame

    def text(self) -> str:
        """A table for the terminal, one line per item."""
        lines = [f"{'item':>5} {'task':>5} {'state':<9} {'attempts':>8} {'seconds':>8} "
                 f"{'peak mem':>9}  host          reasons"]
        for r in self.rows:
            seconds = "" if r.duration is None else f"{r.duration:.1f}"
            memory = "" if r.peak_memory is None else format_bytes(r.peak_memory)
            lines.append(f"{r.item:>5} {r.task:>5} {r.state:<9} {r.attempts:>8} {seconds:>8} "
                         f"{memory:>9}  {r.host[:12]:<12}  {r.why()}"
                         + (f" ({r.error[:120]})" if r.error else ""))
        images = sorted({(r.image, r.image_digest) for r in self.rows if r.image})
        for reference, digest in images:
            lines.append(f"image {reference} {digest or '(digest unknown)'}")
        if self.cost is not None:
            lines.append(str(self.cost))
        return "\n".join(lines)

    def to_html(self, path: str) -> str:
        """Write the run report as one self-contained HTML file (summary, timeline, failures by
        cause with a log tail each, memory against the limit, the items); opens offline."""
        from .html_report import write
        return write(self, path)

    def _repr_html_(self) -> str:
        from .html_report import compact
        return compact(self)

    def plot(self, path: str, *, title: str | None = None) -> str:
        """Draw one bar per task on a time axis, coloured by state, into path (PNG, SVG, ...).

        Needs matplotlib (``pip install 'spmd[plot]'``). Tasks that never started have no bar.
        """
        try:
            import matplotlib
            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
            from matplotlib.patches import Patch
        except ImportError as exc:
            raise ImportError("Report.plot needs matplotlib: pip install 'spmd[plot]'") from exc
        tasks = self.tasks()
        started = [r.start for r in tasks if r.start is not None]
        origin = min(started) if started else 0.0
        height = max(2.5, 0.3 * len(tasks) + 1.2)
        figure, axes = plt.subplots(figsize=(9, height), dpi=100)
        try:
            for row in tasks:
                if row.start is None:
                    continue
                end = row.end if row.end is not None else row.start
                axes.barh(row.task, max(end - row.start, 0.0), left=row.start - origin, height=0.7,
                          color=COLOURS.get(row.state, "#000000"), antialiased=False, linewidth=0)
            axes.set_xlabel("seconds since the first task started")
            axes.set_ylabel("task")
            axes.set_ylim(len(tasks) - 0.5, -0.5)  # task 0 at the top
            axes.set_title(title or f"{self.job_id}: {len(tasks)} tasks")
            states = [s for s in COLOURS if any(r.state == s for r in tasks)]
            axes.legend(handles=[Patch(color=COLOURS[s], label=s.lower()) for s in states],
                        loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
            figure.savefig(path, bbox_inches="tight")
        finally:
            plt.close(figure)
        return path


def build(job: "Job", kept: dict[int, list[ItemReport]] | None = None) -> Report:
    """The report of a job, from its outputs, its queue's states and its logs.

    ``kept``, when given, holds the rows of tasks that had ended at an earlier build of the same
    job; those are not read again, and tasks ended since are added (the dashboard's live page).
    """
    backend, manifest = job.backend, job.manifest
    states = backend.queue.states(job.handle) if job.handle else {}
    outputs = {layout.task_of_output_key(k) for k in backend.store.list(layout.output_prefix(job.id))}
    digest = image_digest(backend, manifest.image)
    rows: list[ItemReport] = []
    for task in range(manifest.n_tasks):
        if kept is not None and task in kept:
            rows.extend(kept[task])
            continue
        status = states.get(task, TaskStatus())
        output = _output(job, task) if task in outputs else None
        made = _task_rows(job, task, status, output, digest)
        if kept is not None and all(row.state in (SUCCEEDED, FAILED, CANCELLED) for row in made):
            kept[task] = made
        rows.extend(made)
    rows.extend(_reused_rows(job))
    rows = _with_data(job, rows)
    rows.sort(key=lambda row: row.item)
    report = Report(job_id=job.id, rows=rows, vcpus=manifest.resources.vcpus,
                    memory=manifest.resources.memory, source=job)
    report.cost = backend.estimate_cost(report)
    return report


def _with_data(job: "Job", rows: list[ItemReport]) -> list[ItemReport]:
    """Rows with each item's URL inputs (and versions) and destination, from data.json."""
    found = job._data()
    if not found.inputs and found.destinations is None:
        return rows
    return [replace(row, inputs=tuple(f"{ref.url}@{ref.version}" for ref in found.inputs_of(row.item)),
                    outputs_to=found.destination(row.item) or "") for row in rows]


def _output(job: "Job", task: int) -> TaskOutput | ResultDamaged | None:
    """The task's latest output, the error that says it is damaged, or None."""
    try:
        return protocol.read_output(job.backend.store, job.id, task)
    except ResultDamaged as exc:
        return exc


def _task_rows(job: "Job", task: int, status: TaskStatus, output: TaskOutput | ResultDamaged | None,
               digest: str) -> list[ItemReport]:
    manifest = job.manifest
    damaged = output if isinstance(output, ResultDamaged) else None
    output = None if damaged else output
    provenance = asdict(output.provenance) if output else {}
    attempts = max(status.attempts, provenance.get("attempt", 0))
    ended = status.state in (SUCCEEDED, FAILED, CANCELLED)
    reasons = list(_earlier_reasons(job, task, attempts)) if attempts > 1 else []
    if attempts:
        if status.state == SUCCEEDED:
            reasons.append("succeeded")
        elif ended:
            reasons.append(status.reason or "failed")
        elif status.state == RUNNING:
            reasons.append("running")
    # The queue's times cover the whole attempt (container start to exit); the worker's own
    # times, in its provenance, are the fallback for a queue that does not report times.
    start = status.started if status.started is not None else provenance.get("started")
    end = status.ended if status.ended is not None else provenance.get("ended")
    # the client's own rule decides whether the task has ended, and how
    step = protocol.resolve([task], {task: output}, {task: status},
                            wait_for_queue=manifest.outputs_wait_for_queue)
    resolution = step.resolutions[0] if step.resolutions else None
    results = output.results if output else []
    rows = []
    for position, item in enumerate(manifest.items_of(task)):
        kind, payload = results[position] if position < len(results) else (None, None)
        state, error = status.state, ""
        if damaged is not None:
            state, error = FAILED, f"ResultDamaged: {damaged}"
        elif resolution is None:
            state = RUNNING if status.state == RUNNING else PENDING
        elif resolution.kind == "output":
            state = SUCCEEDED if kind == "ok" else FAILED
            error = _error_text(payload) if kind == "error" else ""
        elif resolution.kind == "cancelled":
            state = CANCELLED
        else:
            state = FAILED
        rows.append(ItemReport(
            item=item, task=task, state=state, start=start, end=end, attempts=attempts,
            reasons=tuple(reasons), peak_memory=provenance.get("peak_memory"),
            host=provenance.get("host", ""), image=provenance.get("image") or manifest.image,
            image_digest=digest, error=error,
            lost=(status.lost or "error") if resolution is not None and resolution.kind == "lost" else ""))
    return rows


def _reused_rows(job: "Job") -> list[ItemReport]:
    """Rows of items taken from earlier jobs (task -1): their earlier run's provenance."""
    rows = []
    for item in job.manifest.reused:
        source = job.reused.get(item)
        provenance = source.provenance if source else {}
        rows.append(ItemReport(
            item=item, task=REUSED_TASK, state=SUCCEEDED, start=provenance.get("started"),
            end=provenance.get("ended"), attempts=0,
            reasons=(f"reused from job {source.job_id}" if source else "reused",),
            peak_memory=provenance.get("peak_memory"), host=provenance.get("host", ""),
            image=provenance.get("image", ""), image_digest=""))
    return rows


def _error_text(payload: Any) -> str:
    try:
        exc = codec.rebuild_exception(payload)
    except Exception:  # a record we cannot rebuild still says something
        return "an exception (cannot be rebuilt here)"
    return f"{type(exc).__name__}: {exc}"


def _earlier_reasons(job: "Job", task: int, attempts: int) -> Sequence[str]:
    """Why attempts 1..attempts-1 ended, read from the task's log (one section per attempt)."""
    text = job.backend.queue.logs(job.handle, task) if job.handle else ""
    sections = _ATTEMPT_HEADER.split(text)
    by_attempt = {1: sections[0]}
    for number, body in zip(sections[1::2], sections[2::2]):
        by_attempt[int(number)] = body
    return [_why(by_attempt.get(n, "")) for n in range(1, attempts)]


def _why(section: str) -> str:
    """The end of one attempt's log, as a reason: killed by spmd, an exception, or unknown."""
    lines = [line for line in section.rstrip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("spmd: "):
            return line[len("spmd: "):]
    if "Traceback (most recent call last)" in section:
        after = section.rsplit("Traceback (most recent call last)", 1)[1].splitlines()
        raised = [line for line in after if line and not line.startswith((" ", "\t"))]
        if raised:
            return f"raised {raised[-1].strip()[:200]}; retried"
    return "failed; retried"


def image_digest(backend: Any, reference: str) -> str:
    """The content digest of an image reference: from the registry when it can tell
    (``registry.digest(reference)``), else from the Docker engine (the repository digest
    after a push, or the image id, which is the digest of its configuration)."""
    if not reference:
        return ""
    if getattr(type(backend), "uses_images", True):
        lookup = getattr(backend.registry, "digest", None)
        if callable(lookup):
            try:
                found = lookup(reference)
                if found:
                    return found
            except Exception:
                pass
    try:
        from . import docker_engine
        image = docker_engine.client().images.get(reference)
    except Exception:
        return ""
    head, colon, tail = reference.rpartition(":")
    repository = head if colon and "/" not in tail else reference
    for repo_digest in image.attrs.get("RepoDigests") or ():
        name, _, digest = repo_digest.partition("@")
        if name == repository:
            return digest
    return image.id
