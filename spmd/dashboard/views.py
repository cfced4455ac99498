"""What the dashboard shows, as plain data (JSON) and HTML pieces, read through a Backend.

    Views(backend) ── jobs()            manifests + queue states: counts, age, duration, cost
                   ├─ live(job)         the job page's sections (html_report's pieces) + counts
                   ├─ item(job, i)      provenance, input URLs, output files
                   ├─ log(job, i, off)  what the task's log gained since byte ``off`` (log_part)
                   └─ cancel(job)       the one action that changes anything

Only the store and the queue are read (``Backend.store``, ``Backend.queue``), never file
paths, so a local folder, S3 and a Slurm shared_dir look the same. What is shown is chosen
field by field: a job's environment, its settings and its secrets are never read.
A task that has ended does not change, so its rows are read once (``report.build``'s
``kept``); a job whose tasks have all ended keeps its summary and report.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

from ..backend import Backend
from ..batch_queue import STATES, TERMINAL, TaskStatus
from ..errors import ObjectNotFound
from ..client.job import Job, load
from .. import layout
from ..layout import Manifest
from ..report import ItemReport, Report
from .. import html_report

LIVE_ROWS = 500  # item rows on the live page; the HTML report has them all


class Views:
    """The dashboard's reads of one backend's store, with what no longer changes kept."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._ended: dict[str, dict] = {}       # job id -> summary, once every task ended
        self._reports: dict[str, Report] = {}   # job id -> report, once every task ended
        self._kept: dict[str, dict[int, list[ItemReport]]] = {}  # rows of tasks that ended
        self._manifests: list[Manifest] = []

    # -- jobs ---------------------------------------------------------------------------------

    def jobs(self, limit: int = 100) -> list[dict]:
        """The newest jobs: id, name, backend, tasks per state, age, duration, cost, after."""
        self._manifests = self._list_manifests()
        return [self.summary(m) for m in self._manifests[:limit]]

    def _list_manifests(self) -> list[Manifest]:
        """Every job's manifest, newest first; one listing, and a read only for a job not seen
        before (a manifest never changes)."""
        known = {m.job_id: m for m in self._manifests}
        found = []
        for key in self.backend.store.list(layout.JOBS):
            if key.count("/") != 2 or not key.endswith("/manifest.json"):
                continue
            job_id = key.split("/")[1]
            if job_id not in known:
                try:
                    known[job_id] = Manifest.from_json(self.backend.store.get(key))
                except (ObjectNotFound, ValueError, TypeError, KeyError):
                    continue  # deleted meanwhile, or not a job spmd wrote
            found.append(known[job_id])
        return sorted(found, key=lambda m: m.created, reverse=True)

    def summary(self, manifest: Manifest) -> dict:
        kept = self._ended.get(manifest.job_id)
        if kept is not None:
            return {**kept, "age": time.time() - manifest.created}
        job = self.job(manifest.job_id)
        states = self._states(job)
        counts = {s: 0 for s in STATES}
        for task in range(manifest.n_tasks):
            counts[states.get(task, TaskStatus()).state] += 1
        started = [s.started for s in states.values() if s.started is not None]
        ended = [s.ended for s in states.values() if s.ended is not None]
        finished = manifest.n_tasks > 0 and counts["PENDING"] + counts["RUNNING"] == 0
        duration = None
        if started:
            duration = (max(ended) if finished and ended else time.time()) - min(started)
        cost = self._cost(job, states)
        found = {"id": manifest.job_id, "name": manifest.name, "backend": manifest.backend,
                 "items": manifest.n_items, "tasks": manifest.n_tasks, "counts": counts,
                 "created": manifest.created, "age": time.time() - manifest.created,
                 "duration": duration, "cost": cost, "after": manifest.after, "done": finished}
        if finished:
            self._ended[manifest.job_id] = found
        return found

    def _cost(self, job: Job, states: dict[int, TaskStatus]) -> str | None:
        """The backend's estimate from the queue's times alone (no output is read)."""
        if type(self.backend).estimate_cost is Backend.estimate_cost:
            return None  # this backend bills nothing
        rows = [ItemReport(item=t, task=t, state=s.state, start=s.started, end=s.ended,
                           attempts=s.attempts, reasons=(), peak_memory=None, host="", image="",
                           image_digest="") for t, s in states.items()]
        resources = job.manifest.resources
        estimate = self.backend.estimate_cost(Report(job.id, rows, resources.vcpus, resources.memory))
        return None if estimate is None else f"${estimate.dollars:.4f} (estimate)"

    def job(self, job_id: str) -> Job:
        """The job, loaded once without a watcher (JobNotFound if the store has none)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                job = self._jobs[job_id] = load(self.backend, job_id, watch=False)
            return job

    def _states(self, job: Job) -> dict[int, TaskStatus]:
        return dict(self.backend.queue.states(job.handle)) if job.handle else {}

    # -- one job ------------------------------------------------------------------------------

    def report(self, job_id: str) -> Report:
        """The job's run report: the rows of tasks that ended are read once, and the whole
        report is kept once every task has ended."""
        kept = self._reports.get(job_id)
        if kept is not None:
            return kept
        from ..report import build
        job = self.job(job_id)
        with self._lock:
            kept = self._kept.setdefault(job_id, {})
        report = build(job, kept)  # only tasks not yet ended are read again
        if all(row.state in TERMINAL for row in report.rows):
            self._reports[job_id] = report
        return report

    def live(self, job_id: str, token_query: str = "") -> dict:
        """The job page's sections as HTML, its counts, and whether it still changes."""
        job = self.job(job_id)
        report = self.report(job_id)
        counts = html_report.state_counts(report.rows)
        done = all(row.state in TERMINAL for row in report.rows)
        manifest = job.manifest
        links = []
        if manifest.after:
            links.append(f'upstream: <a href="/job/{html_report.esc(manifest.after)}{token_query}">'
                         f"{html_report.esc(manifest.after)}</a>")
        for other in self._manifests:
            if other.after == job_id:
                links.append(f'next step: <a href="/job/{html_report.esc(other.job_id)}'
                             f'{token_query}">{html_report.esc(other.job_id)}</a>')
        return {
            "id": job_id, "done": done, "counts": counts,
            "sections": {
                "summary": html_report.summary_html(report, manifest)
                + ("<p>" + " · ".join(links) + "</p>" if links else ""),
                "timeline": html_report.timeline_svg(report),
                "failures": html_report.failures_html(html_report.failure_groups(report)),
                "memory": html_report.memory_html(report),
                "items": html_report.items_html(report, limit=LIVE_ROWS, clickable=True),
            },
        }

    def item(self, job_id: str, index: int) -> dict:
        """One item: its row, provenance, input URLs and output files."""
        job = self.job(job_id)
        job._check_index(index)
        row = self.report(job_id).rows[index]
        try:
            provenance: Any = job.provenance(index)
        except (ObjectNotFound, KeyError):
            provenance = None
        try:
            outputs = job.output_urls(index)
        except Exception as exc:  # a destination that cannot be listed now
            outputs = {"(could not list)": f"{type(exc).__name__}: {exc}"}
        return {"item": index, "task": job.manifest.task_of(index), "row": asdict(row),
                "provenance": provenance, "inputs": list(row.inputs), "outputs": outputs,
                "memory_limit": job.manifest.resources.memory}

    def log(self, job_id: str, index: int, offset: int) -> dict:
        """What the item's task log holds from byte ``offset`` on, its length, and whether the
        task has ended (then the log grows no more)."""
        job = self.job(job_id)
        job._check_index(index)
        task = job.manifest.task_of(index)
        if task is None or not job.handle:
            return {"text": job.logs(index) if offset == 0 else "", "length": 0, "ended": True}
        status = self.backend.queue.states(job.handle).get(task, TaskStatus())
        data, length = self.backend.queue.log_part(job.handle, task, max(offset, 0))
        cut = length < offset  # the log was cut to its last log_limit bytes meanwhile
        if cut:
            data, _ = self.backend.queue.log_part(job.handle, task, 0)
        return {"text": data.decode(errors="replace"), "length": length, "cut": cut,
                "ended": status.state in TERMINAL, "state": status.state}

    def cancel(self, job_id: str) -> dict:
        """Cancel the job's running and pending tasks; what ended stays."""
        job = self.job(job_id)
        job.cancel()
        self._reports.pop(job_id, None)
        self._ended.pop(job_id, None)
        return {"id": job_id, "cancelled": True, "counts": job.status()}

