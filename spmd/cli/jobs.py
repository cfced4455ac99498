"""Commands about jobs: ``jobs``, ``status``, ``results``, ``logs``, ``report``, ``cancel``.

Each finds jobs in the store of the selected profile/backend (``--profile``, ``--backend``),
so a job is seen from any shell, while or after it runs.
"""
from __future__ import annotations

import codecs
import json
import sys
import time
from typing import Any

from ..batch_queue import CANCELLED, FAILED, STATES, TERMINAL, TaskStatus

EXIT_OK, EXIT_FAILED = 0, 1


def open_job(args, *, watch: bool = False):
    from ..client.knot import attach
    return attach(args.job_id, backend=args.backend, profile=args.profile, watch=watch)


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{state.lower()}={n}" for state, n in counts.items())


def age(seconds: float) -> str:
    """3s, 5m, 2h, 4d: the largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def list_jobs(backend) -> list:
    """Manifests of the jobs in a backend's store, newest first."""
    from .. import layout
    from ..errors import ObjectNotFound
    from ..layout import Manifest
    manifests = []
    for key in backend.store.list(layout.JOBS):
        if key.count("/") == 2 and key.endswith("/manifest.json"):
            try:
                manifests.append(Manifest.from_json(backend.store.get(key)))
            except (ObjectNotFound, ValueError, TypeError, KeyError):
                continue  # deleted meanwhile, or not a job spmd wrote
    return sorted(manifests, key=lambda m: m.created, reverse=True)


def cmd_jobs(args) -> int:
    from ..plugins import open_backend
    from ..client.job import load
    from . import settings_of
    backend = open_backend(settings_of(args))
    manifests = list_jobs(backend)[:args.limit]
    if not manifests:
        print(f"no jobs in {backend.store.url}")
        return EXIT_OK
    now = time.time()
    header = f"{'JOB':<44} {'NAME':<16} {'BACKEND':<8} " + " ".join(
        f"{s.lower():>9}" for s in STATES) + f" {'AGE':>5}"
    print(header)
    for manifest in manifests:
        counts = load(backend, manifest.job_id, watch=False).status()
        print(f"{manifest.job_id:<44} {manifest.name[:16]:<16} {manifest.backend:<8} "
              + " ".join(f"{counts[s]:>9}" for s in STATES) + f" {age(now - manifest.created):>5}")
    return EXIT_OK


def cmd_status(args) -> int:
    job = open_job(args)
    counts = job.status()
    print(f"{job.id}: {len(job)} items in {job.manifest.n_tasks} tasks on {job.manifest.backend}")
    print(_counts(counts))
    if counts["PENDING"]:  # why tasks wait, when the queue says (e.g. MISCONFIGURATION:...)
        states = job.backend.queue.states(job.handle) if job.handle else {}
        for reason in dict.fromkeys(s.reason for s in states.values()
                                    if s.state == "PENDING" and s.reason and not s.attempts):
            print(f"waiting: {reason}")
    return EXIT_FAILED if counts[FAILED] else EXIT_OK


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def cmd_results(args) -> int:
    job = open_job(args, watch=True)
    if not job.wait(args.timeout):
        pending = sum(not f.done() for f in job.futures)
        print(f"spmd: error: {pending} of {len(job)} items of {job.id} not done after "
              f"{args.timeout:g}s; try again later or without --timeout", file=sys.stderr)
        return EXIT_FAILED
    rows, failed = [], 0
    for index, future in enumerate(job.futures):
        if future.cancelled():
            rows.append({"item": index, "ok": False, "error": "cancelled"})
        elif future.exception() is not None:
            exc = future.exception()
            rows.append({"item": index, "ok": False,
                         "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
        else:
            rows.append({"item": index, "ok": True, "value": _jsonable(future.result())})
        failed += not rows[-1]["ok"]
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        for row in rows:
            shown = repr(row["value"]) if row["ok"] else f"error: {row['error']}"
            print(f"{row['item']}\t{shown}")
    if failed:
        print(f"spmd: {failed} of {len(job)} items failed; see spmd logs {job.id} ITEM",
              file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_logs(args) -> int:
    job = open_job(args)
    if not 0 <= args.index < len(job):
        print(f"spmd: error: job {job.id} has items 0..{len(job) - 1}, not {args.index}",
              file=sys.stderr)
        return 2
    if not args.follow or job.manifest.task_of(args.index) is None:  # a reused item ran before
        print(job.logs(args.index), end="")
        return EXIT_OK
    task = job.manifest.task_of(args.index)
    shown, interval = 0, job._interval
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        status = job.backend.queue.states(job.handle).get(task, TaskStatus()) if job.handle \
            else TaskStatus(CANCELLED)
        # Only what is new, read from where the last look ended, never the whole log again.
        data, length = job.backend.queue.log_part(job.handle, task, shown) if job.handle \
            else (b"", 0)
        if length < shown:  # cut to its last log_limit bytes meanwhile
            sys.stdout.write("\nspmd: the log was cut; following from its end\n")
            data, shown = b"", length
        if data:
            sys.stdout.write(decoder.decode(data))
            sys.stdout.flush()
            shown += len(data)
        if status.state in TERMINAL:
            return EXIT_FAILED if status.state == FAILED else EXIT_OK
        time.sleep(interval)


def cmd_report(args) -> int:
    job = open_job(args)
    report = job.report()
    if args.json:
        from dataclasses import asdict
        json.dump({"job": job.id, "rows": [asdict(r) for r in report],
                   "cost": asdict(report.cost) if report.cost else None}, sys.stdout, indent=1)
        print()
    else:
        print(report.text())
    if args.html:
        report.to_html(args.html)
        print(f"HTML report written to {args.html}", file=sys.stderr)
    if args.plot:
        report.plot(args.plot)
        print(f"timeline written to {args.plot}", file=sys.stderr)
    return EXIT_FAILED if any(r.state == FAILED for r in report) else EXIT_OK


def cmd_cancel(args) -> int:
    open_job(args).cancel()
    print(f"cancel sent to {args.job_id}")
    return EXIT_OK


def add_commands(sub) -> None:
    """Add the job commands to the top parser's subparsers."""
    p = sub.add_parser("jobs", help="recent jobs: id, name, backend, tasks per state, age",
                       description="List the most recent jobs in the selected store.")
    p.add_argument("--limit", type=int, default=20, help="show at most this many (default 20)")
    p.set_defaults(func=cmd_jobs)
    for name, func, text in (("status", cmd_status, "task counts per state of a job"),
                             ("cancel", cmd_cancel, "cancel a job's running and pending tasks")):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("job_id", metavar="JOB")
        p.set_defaults(func=func)
    p = sub.add_parser("results", help="every item's value (waits for the job)",
                       description="Print every item's value or error, in input order; waits "
                       "for the job. Exit status 1 when an item failed.")
    p.add_argument("job_id", metavar="JOB")
    p.add_argument("--json", action="store_true", help="a JSON list of {item, ok, value|error}")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    p.set_defaults(func=cmd_results)
    p = sub.add_parser("logs", help="the log of the task that ran an item",
                       description="Print the log of the task that ran an item (every attempt).")
    p.add_argument("job_id", metavar="JOB")
    p.add_argument("index", type=int, metavar="ITEM")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing what the log gains until the task ends")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("report", help="per item: times, attempts, reasons, memory, host, image",
                       description="The run report: one row per item, lost tasks included; "
                       "on AWS with a cost estimate.")
    p.add_argument("job_id", metavar="JOB")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--plot", metavar="PNG", help="also draw the timeline (needs spmd[plot])")
    p.add_argument("--html", metavar="FILE", help="also write the self-contained HTML report")
    p.set_defaults(func=cmd_report)

