"""The ``spmd`` command: configuration, jobs and images from the shell."""
from __future__ import annotations

import argparse
import logging
import sys

from .errors import SpmdError


def _settings(args):
    from .config import resolve
    return resolve({"backend": getattr(args, "backend", None)}, profile=args.profile)


def cmd_config(args) -> int:
    print(_settings(args).describe())
    return 0


def cmd_backends(args) -> int:
    from .plugins import backend_names, broken_plugins
    for name in backend_names():
        print(name)
    for plugin, reason in broken_plugins().items():
        print(f"# plugin {plugin} failed to load: {reason}", file=sys.stderr)
    return 0


def _job(args):
    from .knot import attach
    return attach(args.job_id, backend=args.backend, profile=args.profile, watch=False)


def cmd_status(args) -> int:
    job = _job(args)
    counts = job.status()
    print(f"{job.id}: {len(job)} items in {job.manifest.n_tasks} tasks on {job.manifest.backend}")
    print("  ".join(f"{state.lower()}={n}" for state, n in counts.items()))
    if counts["PENDING"]:  # why tasks wait, when the queue says (e.g. MISCONFIGURATION:...)
        states = job.backend.queue.states(job.handle) if job.handle else {}
        for reason in dict.fromkeys(s.reason for s in states.values()
                                    if s.state == "PENDING" and s.reason and not s.attempts):
            print(f"waiting: {reason}")
    return 0


def cmd_logs(args) -> int:
    print(_job(args).logs(args.index), end="")
    return 0


def cmd_cancel(args) -> int:
    _job(args).cancel()
    print(f"cancel sent to {args.job_id}")
    return 0


def cmd_image_bootstrap(args) -> int:
    from . import baseimage
    from .errors import BaseImageError
    if args.if_missing:
        try:
            print(f"base image present: {baseimage.resolve(None)}")
            return 0
        except BaseImageError as exc:
            print(f"{exc}\nmaking one now", file=sys.stderr)
    print(f"made base image {baseimage.bootstrap()}")
    return 0


def _aws_settings(args):
    from .config import resolve
    settings = resolve({"backend": args.backend}, profile=args.profile)
    if settings.backend != "aws":
        from .errors import ConfigError
        raise ConfigError(f"`spmd aws` works on the aws backend, but the configuration selects "
                          f"{settings.backend!r}; pass --profile with an aws profile", key="backend")
    return settings


def cmd_aws_up(args) -> int:
    from spmd_aws import provision
    print(provision.up(_aws_settings(args)))
    return 0


def cmd_aws_down(args) -> int:
    from spmd_aws import provision
    settings = _aws_settings(args)
    if not args.keep_bucket and not args.yes:
        if not sys.stdin.isatty():
            print("spmd: `aws down` deletes the stack's bucket and the job data in it; pass --yes "
                  "to go on, or --keep-bucket to keep it", file=sys.stderr)
            return 2
        answer = input("This deletes the stack's bucket with every job's data. Go on? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 1
    print(provision.down(settings, keep_bucket=args.keep_bucket))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="spmd", description=__doc__)
    top.add_argument("-v", "--verbose", action="store_true", help="log what spmd does")
    top.add_argument("--profile", help="configuration profile (default: SPMD_PROFILE)")
    top.add_argument("--backend", help="backend name (default: from configuration)")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("config", help="print the resolved configuration").set_defaults(func=cmd_config)
    sub.add_parser("backends", help="list the registered backends").set_defaults(func=cmd_backends)
    for name, func, text in (("status", cmd_status, "task counts per state of a job"),
                             ("cancel", cmd_cancel, "cancel a job's running and pending tasks")):
        p = sub.add_parser(name, help=text)
        p.add_argument("job_id")
        p.set_defaults(func=func)
    p = sub.add_parser("logs", help="the log of the task that ran an item")
    p.add_argument("job_id")
    p.add_argument("index", type=int)
    p.set_defaults(func=cmd_logs)
    image = sub.add_parser("image", help="task and base images").add_subparsers(dest="action", required=True)
    p = image.add_parser("bootstrap", help="make a base image from Debian packages (needs root)")
    p.add_argument("--if-missing", action="store_true", help="only when no base image is present")
    p.set_defaults(func=cmd_image_bootstrap)
    aws = sub.add_parser("aws", help="provision or remove the AWS stack").add_subparsers(
        dest="action", required=True)
    aws.add_parser("up", help="create what is missing (idempotent) and print it").set_defaults(
        func=cmd_aws_up)
    p = aws.add_parser("down", help="delete every resource tagged with this stack, nothing else")
    p.add_argument("--keep-bucket", action="store_true", help="keep the bucket and its data")
    p.add_argument("--yes", action="store_true", help="do not ask before deleting the bucket")
    p.set_defaults(func=cmd_aws_down)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        return args.func(args)
    except SpmdError as exc:
        print(f"spmd: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
