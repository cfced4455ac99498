"""``spmd aws up`` and ``spmd aws down``: the AWS backend's command group.

Registered through the ``spmd_register_commands`` hook (spmd_aws/plugin.py) and imported
only when ``spmd aws ...`` runs, so the core command line imports no AWS code.
"""
from __future__ import annotations

import argparse
import sys

from spmd.errors import ConfigError


def _aws_settings(args):
    from spmd.config import resolve
    settings = resolve({"backend": args.backend}, profile=args.profile)
    if settings.backend != "aws":
        raise ConfigError(f"`spmd aws` works on the aws backend, but the configuration selects "
                          f"{settings.backend!r}; pass --profile with an aws profile", key="backend")
    return settings


def cmd_up(args) -> int:
    from . import compute, provision
    on_running = compute.WAIT if args.wait else compute.FORCE if args.force else compute.REFUSE
    print(provision.up(_aws_settings(args), on_running=on_running))
    return 0


def cmd_down(args) -> int:
    from . import provision
    settings = _aws_settings(args)
    if not args.keep_bucket and not args.yes:
        if not sys.stdin.isatty():
            print("spmd: error: `aws down` deletes the stack's bucket and the job data in it; pass "
                  "--yes to go on, or --keep-bucket to keep it", file=sys.stderr)
            return 2
        answer = input("This deletes the stack's bucket with every job's data. Go on? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 1
    print(provision.down(settings, keep_bucket=args.keep_bucket))
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``up`` and ``down`` to the ``spmd aws`` parser."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("up", help="create what is missing (idempotent) and print it",
                       description="Create the stack's bucket, registry, roles, compute "
                       "environment and job queue where missing; print what was made or found. "
                       "A change of the compute environment's infrastructure (instance types, "
                       "subnets, security groups...) is refused while jobs run on it, since AWS "
                       "Batch would end them.")
    p.set_defaults(func=cmd_up)
    when = p.add_mutually_exclusive_group()
    when.add_argument("--wait", action="store_true", help="apply an infrastructure change once "
                      "the jobs running on the compute environment have ended")
    when.add_argument("--force", action="store_true", help="apply it now: AWS Batch ends the "
                      "running jobs")
    p = sub.add_parser("down", help="delete every resource tagged with this stack, nothing else",
                       description="Delete every resource tagged with this stack, nothing else.")
    p.add_argument("--keep-bucket", action="store_true", help="keep the bucket and its data")
    p.add_argument("--yes", action="store_true", help="do not ask before deleting the bucket")
    p.set_defaults(func=cmd_down)
