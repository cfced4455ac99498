"""The run report as HTML: one self-contained file, and the pieces the dashboard reuses.

    Report rows ──> summary (counts, wall and CPU time, cost, image, resources)
               ├──> timeline: an inline SVG, one bar per task, coloured by state
               ├──> failures grouped by cause (out of memory, timeout, lost, pull failure,
               │    user error by exception type), each with its count and first log tail
               ├──> memory: each task's peak against the limit, and what to ask for instead
               └──> the item table (provenance, attempts and why each ended)

Everything is drawn here, on the server side, as HTML and SVG with inline CSS and a few lines
of inline JavaScript: the file opens offline and can be mailed. A job's environment and
secrets are never read, so they cannot appear.
"""
from __future__ import annotations

import html
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from .batch_queue import CANCELLED, FAILED, PENDING, RUNNING, STATES, SUCCEEDED
from .units import format_bytes

if TYPE_CHECKING:
    from .client.job import Job
    from .layout import Manifest
    from .report import ItemReport, Report

COLOURS = {SUCCEEDED: "#2ca02c", FAILED: "#d62728", CANCELLED: "#9467bd", RUNNING: "#1f77b4",
           PENDING: "#ff7f0e"}
TAIL_LINES = 30
TAIL_BYTES = 64 * 1024
WIDTH = 900  # of the SVG charts, in px
_PULL = re.compile(r"pull|CannotPull|manifest unknown|image .*not found|ErrImage", re.IGNORECASE)

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px}td,th{padding:2px 6px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}th{background:#f6f6f6;position:sticky;top:0}
.num{text-align:right}.muted{color:#777}.state{font-weight:600}
.SUCCEEDED{color:#2ca02c}.FAILED{color:#d62728}.CANCELLED{color:#9467bd}.RUNNING{color:#1f77b4}
.PENDING{color:#ff7f0e}pre{background:#f7f7f7;padding:.5em;overflow:auto;max-height:20em;
font-size:12px;white-space:pre-wrap}.counts span{margin-right:1.2em}.bar{shape-rendering:crispEdges}
.group{border-left:4px solid #d62728;padding:.2em .8em;margin:.6em 0}.hint{background:#fff8e1;
padding:.3em .6em}.progress{display:flex;height:14px;width:100%;max-width:600px;background:#eee}
.progress div{height:100%}dl{display:grid;grid-template-columns:max-content auto;gap:0 1em}
dt{color:#555}dd{margin:0}tr[data-item]{cursor:pointer}
"""


@dataclass
class FailureGroup:
    """Failed items that failed the same way: cause, detail (an exception type or a reason)."""

    cause: str                  # "out of memory", "timeout", "lost", "requeued", "pull failure",
    #                             "user error", "damaged result"
    detail: str
    items: list[int] = field(default_factory=list)
    tasks: list[int] = field(default_factory=list)
    example: str = ""           # the first item's error or reason
    tail: str = ""              # the last lines of the first task's log

    @property
    def count(self) -> int:
        return len(self.items)


def cause_of(row: "ItemReport") -> tuple[str, str]:
    """(cause, detail) of a failed row: how the queue says its task ended, else its exception."""
    reason = row.reasons[-1] if row.reasons else ""
    if row.error.startswith("ResultDamaged"):
        return "damaged result", "ResultDamaged"
    if row.lost == "oom" or (not row.lost and reason.startswith("out of memory")):
        return "out of memory", ""
    if row.lost == "timeout":
        return "timeout", ""
    if row.lost == "requeue":  # told to stop more often than infra_retries allows
        return "requeued", ""
    if row.lost == "infrastructure":
        return ("pull failure", "") if _PULL.search(reason) else ("lost", _general(reason))
    if row.error:
        return "user error", row.error.split(":", 1)[0]
    return "user error", _general(reason) or "ended without output"


def _general(reason: str) -> str:
    """A reason without its numbers, so that 'exited with code 7' on two tasks is one group."""
    return re.sub(r"\b0x[0-9a-f]+\b|[0-9a-f]{12,}", "…", reason)[:120]


def failure_groups(report: "Report", tail: Callable[[int], str] | None = None) -> list[FailureGroup]:
    """The report's failed items grouped by cause, largest group first; ``tail(task)`` gives
    each group's first log tail (default: from the report's job, when it has one)."""
    tail = tail or log_tail_reader(report)
    groups: dict[tuple[str, str], FailureGroup] = {}
    for row in report.rows:
        if row.state != FAILED:
            continue
        cause, detail = cause_of(row)
        group = groups.setdefault((cause, detail), FailureGroup(cause, detail))
        group.items.append(row.item)
        if row.task not in group.tasks:
            group.tasks.append(row.task)
        if not group.example:
            group.example = row.error or (row.reasons[-1] if row.reasons else "")
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.cause, g.detail))
    if tail is not None:
        for group in ordered:
            if group.tasks and group.tasks[0] >= 0:
                try:
                    group.tail = tail(group.tasks[0])
                except Exception as exc:  # a log that cannot be read now does not stop the report
                    group.tail = f"(the log could not be read: {type(exc).__name__})"
    return ordered


def log_tail_reader(report: "Report") -> Callable[[int], str] | None:
    """The last lines of a task's log, read from its end only, for the report's job."""
    job = report.source
    if job is None or not job.handle:
        return None

    def read(task: int) -> str:
        data, _ = job.backend.queue.log_part(job.handle, task, -TAIL_BYTES)
        return "\n".join(data.decode(errors="replace").rstrip().splitlines()[-TAIL_LINES:])
    return read


# -- the pieces ------------------------------------------------------------------------------

def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def state_counts(rows: Iterable["ItemReport"]) -> dict[str, int]:
    counts = Counter(row.state for row in rows)
    return {state: counts.get(state, 0) for state in STATES}


def counts_html(counts: dict[str, int], noun: str = "items") -> str:
    total = sum(counts.values()) or 1
    bar = "".join(f'<div title="{s.lower()} {n}" style="width:{100 * n / total:.2f}%;'
                  f'background:{COLOURS[s]}"></div>' for s, n in counts.items() if n)
    text = "".join(f'<span class="{s}" data-state="{s}">{s.lower()} <b>{n}</b></span>'
                   for s, n in counts.items())
    return f'<div class="progress">{bar}</div><p class="counts">{noun}: {text}</p>'


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def _when(epoch: float | None) -> str:
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def summary_html(report: "Report", manifest: "Manifest | None" = None) -> str:
    """Job, counts, wall time, CPU time, cost and image, as a definition list."""
    rows = report.rows
    starts = [r.start for r in rows if r.start is not None]
    ends = [r.end for r in rows if r.end is not None]
    tasks = report.tasks()
    busy = sum(r.duration or 0.0 for r in tasks)
    facts = [("job", report.job_id)]
    if manifest is not None:
        facts += [("name", manifest.name), ("backend", manifest.backend),
                  ("submitted", _when(manifest.created)),
                  ("resources", _resources(manifest))]
        if manifest.after:
            facts.append(("after", f"job {manifest.after} (item by item)"))
    facts += [("items", f"{len(rows)} in {len(tasks)} tasks"),
              ("wall time", _seconds(max(ends) - min(starts)) if starts and ends else ""),
              ("task time", f"{_seconds(busy)} × {report.vcpus:g} vCPU"),
              ("retried", str(sum(1 for r in tasks if r.attempts > 1)) + " tasks")]
    requeues = sum(r.requeues for r in tasks)
    if requeues:  # told to stop (walltime, preemption), their checkpoints saved
        requeued = sum(1 for r in tasks if r.requeues)
        facts.append(("requeued", f"{requeues} times, in {requeued} tasks"))
    images = sorted({(r.image, r.image_digest) for r in rows if r.image})
    for reference, digest in images:
        facts.append(("image", f"{reference} {digest or '(digest unknown)'}"))
    if report.cost is not None:
        facts.append(("cost", str(report.cost)))
    body = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return counts_html(state_counts(rows)) + f"<dl>{body}</dl>"


def _resources(manifest: "Manifest") -> str:
    res = manifest.resources
    parts = [f"{res.vcpus:g} vCPU", f"{format_bytes(res.memory)} memory"]
    if res.more_memory:
        parts.append("then " + ", ".join(format_bytes(m) for m in res.more_memory))
    if res.gpus:
        parts.append(f"{res.gpus} GPU")
    parts.append(f"timeout {res.timeout:g}s" if res.timeout else "no timeout")
    parts.append(f"retries {res.retries}")
    if manifest.max_failures is not None:
        parts.append(f"max_failures {manifest.max_failures}")
    return ", ".join(parts)


def timeline_svg(report: "Report", now: float | None = None, width: int = WIDTH,
                 max_height: int = 600) -> str:
    """One bar per task that started, on seconds since the first start, coloured by state;
    a running task's bar reaches ``now``."""
    tasks = [r for r in report.tasks() if r.start is not None]
    if not tasks:
        return '<p class="muted">no task has started yet</p>'
    now = now if now is not None else time.time()
    origin = min(r.start for r in tasks)
    last = max((r.end if r.end is not None else max(now, r.start)) for r in report.tasks()
               if r.start is not None)
    span = max(last - origin, 1e-3)
    n = max(r.task for r in tasks) + 1
    bar = max(1.0, min(14.0, max_height / n))
    left, top = 40, 4
    plot = width - left - 10
    height = top + n * bar + 24
    out = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}">']
    for row in tasks:
        end = row.end if row.end is not None else max(now, row.start)
        x = left + (row.start - origin) / span * plot
        w = max((end - row.start) / span * plot, 1.0)
        y = top + row.task * bar
        out.append(f'<rect class="bar {row.state}" data-task="{row.task}" x="{x:.1f}" y="{y:.1f}" '
                   f'width="{w:.1f}" height="{max(bar - (1 if bar > 3 else 0), 1):.1f}" '
                   f'fill="{COLOURS.get(row.state, "#000")}"><title>task {row.task} '
                   f'{row.state.lower()} {_seconds(end - row.start)}, attempt {row.attempts}'
                   f'</title></rect>')
    axis = top + n * bar + 14
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        x = left + fraction * plot
        anchor = {0: "start", 1: "end"}.get(fraction, "middle")
        out.append(f'<text x="{x:.0f}" y="{axis:.0f}" font-size="10" text-anchor="{anchor}">'
                   f'{_seconds(fraction * span)}</text>')
    out.append(f'<text x="2" y="{top + 10}" font-size="10">task 0</text>')
    out.append("</svg>")
    legend = " ".join(f'<span style="color:{c}">■ {s.lower()}</span>' for s, c in COLOURS.items())
    return "".join(out) + f"<p>{legend}</p>"


def failures_html(groups: list[FailureGroup], item_href: Callable[[int], str] | None = None) -> str:
    """Each failure group: cause, count, first items, an example error, its first log tail."""
    if not groups:
        return '<p class="muted">no item failed</p>'
    out = []
    for group in groups:
        items = ", ".join(_item_link(i, item_href) for i in group.items[:20])
        more = f" and {group.count - 20} more" if group.count > 20 else ""
        detail = f": {esc(group.detail)}" if group.detail else ""
        out.append(
            f'<div class="group" data-cause="{esc(group.cause)}" data-count="{group.count}">'
            f"<b>{esc(group.cause)}{detail}</b> — <b>{group.count}</b> item"
            f"{'s' if group.count != 1 else ''} in {len(group.tasks)} task"
            f"{'s' if len(group.tasks) != 1 else ''}<br>items {items}{more}<br>"
            f'<span class="muted">{esc(group.example[:500])}</span>'
            + (f"<pre>{esc(group.tail)}</pre>" if group.tail else "") + "</div>")
    return "".join(out)


def _item_link(item: int, item_href: Callable[[int], str] | None) -> str:
    return f'<a href="{esc(item_href(item))}">{item}</a>' if item_href else str(item)


def memory_html(report: "Report", width: int = WIDTH) -> str:
    """Each task's peak memory against the limit (a column per task, the limit a red line),
    with what the peaks suggest asking for."""
    limit = report.memory
    tasks = report.tasks()
    peaks = [(r.task, r.peak_memory) for r in tasks if r.peak_memory]
    oom = sum(1 for r in tasks if r.lost == "oom")
    if not peaks and not oom:
        return '<p class="muted">no peak memory recorded yet</p>'
    hints = []
    if peaks:
        values = [p for _, p in peaks]
        top = max(values)
        hints.append(f"peak memory per task: median {format_bytes(int(statistics.median(values)))}, "
                     f"highest {format_bytes(top)}"
                     + (f" of the {format_bytes(limit)} limit ({100 * top / limit:.0f}%)" if limit else ""))
        if limit and top < 0.5 * limit and not oom:
            hints.append(f"every task used under half its memory: memory=\"{_suggest(top)}\" "
                         "would be enough and lets more tasks run at once")
        over = sum(1 for v in values if limit and v > 0.9 * limit)
        if over:
            hints.append(f"{_tasks(over)} came within 10% of the limit")
    if oom:
        hints.append(f"{_tasks(oom)} ran out of memory at {format_bytes(limit)}: raise memory, or "
                     "give more_memory sizes to retry them larger")
    scale = max([limit, *(p for _, p in peaks)]) * 1.05 or 1
    n = max([r.task for r in tasks] + [0]) + 1
    left, chart = 50, 120
    column = (width - left - 10) / n
    out = [f'<svg class="memory" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{chart + 20}" viewBox="0 0 {width} {chart + 20}">']
    for task, peak in peaks:
        h = peak / scale * chart
        colour = "#d62728" if limit and peak > 0.9 * limit else "#1f77b4"
        out.append(f'<rect class="peak" x="{left + task * column:.1f}" y="{chart - h:.1f}" '
                   f'width="{max(column - (1 if column > 3 else 0), 0.5):.1f}" height="{h:.1f}" '
                   f'fill="{colour}"><title>task {task}: {format_bytes(peak)}</title></rect>')
    if limit:
        y = chart - limit / scale * chart
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d62728" '
                   f'stroke-dasharray="4 2"/><text x="2" y="{y + 4:.1f}" font-size="10">'
                   f'{format_bytes(limit)}</text>')
    out.append(f'<text x="{left}" y="{chart + 14}" font-size="10">task 0</text>'
               f'<text x="{width - 10}" y="{chart + 14}" font-size="10" text-anchor="end">'
               f'task {n - 1}</text></svg>')
    return "".join(f'<p class="hint">{esc(h)}</p>' for h in hints) + "".join(out)


def _tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def _suggest(peak: int) -> str:
    """A memory request a little above peak, rounded up to 64 MiB."""
    step = 64 * 2**20
    return format_bytes(-(-int(peak * 1.25) // step) * step).replace(".0", "")


def items_html(report: "Report", limit: int | None = None, clickable: bool = False) -> str:
    """The item table: state, attempts and reasons, times, memory, host, image, data."""
    rows = report.rows if limit is None else report.rows[:limit]
    head = ("item task state attempts why started seconds memory host digest inputs "
            "outputs_to").split()
    out = ['<table class="items"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for r in rows:
        memory = ""
        if r.peak_memory:
            memory = format_bytes(r.peak_memory)
            if report.memory:
                memory += f" ({100 * r.peak_memory / report.memory:.0f}%)"
        why = r.why() + (f" — {r.error[:300]}" if r.error else "")
        attrs = f' data-item="{r.item}"' if clickable else ""
        out.append(
            f'<tr class="row {r.state}"{attrs}><td class="num">{r.item}</td>'
            f'<td class="num">{r.task if r.task >= 0 else "reused"}</td>'
            f'<td class="state {r.state}">{r.state.lower()}</td><td class="num">{r.attempts}</td>'
            f"<td>{esc(why)}</td><td>{esc(_when(r.start)[11:19])}</td>"
            f'<td class="num">{esc(_seconds(r.duration))}</td><td class="num">{memory}</td>'
            f"<td>{esc(r.host[:16])}</td><td>{esc(r.image_digest[:19])}</td>"
            f"<td>{'<br>'.join(esc(i) for i in r.inputs)}</td><td>{esc(r.outputs_to)}</td></tr>")
    out.append("</tbody></table>")
    if limit is not None and len(report.rows) > limit:
        out.append(f'<p class="muted">the first {limit} of {len(report.rows)} items; the HTML '
                   "report has them all</p>")
    return "".join(out)


_FILTER_JS = """
document.getElementById('filter').addEventListener('change', function (e) {
  var want = e.target.value;
  document.querySelectorAll('table.items tr.row').forEach(function (tr) {
    tr.style.display = (!want || tr.classList.contains(want)) ? '' : 'none';
  });
});
"""


def document(report: "Report", now: float | None = None) -> str:
    """The whole run report as one HTML page with nothing to fetch."""
    manifest = report.source.manifest if report.source is not None else None
    title = f"spmd run report: {manifest.name if manifest else ''} {report.job_id}"
    options = "".join(f'<option value="{s}">{s.lower()}</option>' for s in STATES)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
        f'<p class="muted">made {_when(time.time())} by spmd</p>'
        f"<h2>Summary</h2>{summary_html(report, manifest)}"
        f"<h2>Timeline</h2>{timeline_svg(report, now)}"
        f"<h2>Failures</h2>{failures_html(failure_groups(report))}"
        f"<h2>Memory</h2>{memory_html(report)}"
        f'<h2>Items</h2><p>show <select id="filter"><option value="">every state</option>'
        f"{options}</select></p>{items_html(report)}"
        f"<script>{_FILTER_JS}</script></body></html>")


def write(report: "Report", path: str) -> str:
    """Write ``document(report)`` to path; returns path."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(document(report))
    return path


def compact(report: "Report") -> str:
    """A notebook's view of a report: counts, a small timeline and the failure groups."""
    groups = failure_groups(report, tail=lambda task: "")
    failures = "".join(f"<li>{esc(g.cause)}{': ' + esc(g.detail) if g.detail else ''} — "
                       f"{g.count}</li>" for g in groups)
    return (f"<div><b>spmd report {esc(report.job_id)}</b>"
            f"{counts_html(state_counts(report.rows))}"
            f"{timeline_svg(report, width=600, max_height=150)}"
            + (f"<ul>{failures}</ul>" if failures else "") + "</div>")


def job_compact(job: "Job") -> str:
    """A notebook's view of a job: its tasks per state as a bar, without reading outputs."""
    counts = job.status()
    return (f"<div><b>spmd job {esc(job.id)}</b> ({esc(job.manifest.name)}, {len(job)} items, "
            f"{job.manifest.n_tasks} tasks on {esc(job.manifest.backend)})"
            f"{counts_html(counts, noun='tasks')}</div>")
