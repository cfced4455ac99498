"""The spmd command: configuration, jobs and images from the shell.

    spmd [--profile P] [--backend B] [-v] COMMAND ...
      config, backends, doctor, image bootstrap  (this module)
      jobs, status, results, logs, report,
      cancel, clean, dashboard                   (jobs.py, clean.py, dashboard.py)
      <group> ...                                a plugin's command group (e.g. ``aws``),
                                                 registered with spmd_register_commands and
                                                 imported only when it runs

Exit status: 0 ok, 1 a job (or an item of it) failed, or a service spmd needs failed, 2 a
usage error, including an unknown job id, profile or backend; errors are one line on
stderr that says what to do.
"""
from __future__ import annotations

import argparse
import logging
import sys

from ..errors import ConfigError, JobNotFound, PluginError, SpmdError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: errors in what was asked (unknown job, profile, backend, key): exit status 2
USAGE_ERRORS = (ConfigError, JobNotFound, PluginError)


def settings_of(args):
    """The resolved configuration of --profile/--backend (imports only that backend)."""
    from ..config import resolve
    return resolve({"backend": getattr(args, "backend", None)}, profile=args.profile)


def cmd_config(args) -> int:
    print(settings_of(args).describe())
    return EXIT_OK


def cmd_backends(args) -> int:
    from ..plugins import backend_names, broken_plugins
    for name in backend_names():
        print(name)
    for plugin, reason in broken_plugins().items():
        print(f"# plugin {plugin} failed to load: {reason}", file=sys.stderr)
    return EXIT_OK


def cmd_doctor(args) -> int:
    from ..client import doctor
    return EXIT_OK if doctor.report(doctor.run(settings_of(args)), sys.stdout) else EXIT_FAILED


def cmd_image_bootstrap(args) -> int:
    from ..images import base as baseimage
    from ..errors import BaseImageError
    if args.if_missing:
        try:
            print(f"base image present: {baseimage.resolve(None)}")
            return EXIT_OK
        except BaseImageError as exc:
            print(f"{exc}\nmaking one now", file=sys.stderr)
    print(f"made base image {baseimage.bootstrap()}")
    return EXIT_OK


def parser(groups: dict | None = None) -> argparse.ArgumentParser:
    """The core parser; plugin groups appear as stubs whose arguments their own parser reads."""
    from . import clean, dashboard, jobs
    top = argparse.ArgumentParser(prog="spmd", description=__doc__.split("\n\n")[0],
                                  epilog="exit status: 0 ok, 1 a job failed, 2 usage error")
    top.add_argument("-v", "--verbose", action="store_true", help="log what spmd does")
    top.add_argument("--profile", help="configuration profile (default: SPMD_PROFILE)")
    top.add_argument("--backend", help="backend name (default: from configuration)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("config", help="print the resolved configuration",
                   description="Print the resolved configuration and where each value came from."
                   ).set_defaults(func=cmd_config)
    sub.add_parser("backends", help="list the registered backends",
                   description="List the registered backends and plugins that failed to load."
                   ).set_defaults(func=cmd_backends)
    p = sub.add_parser("doctor", help="check everything a first run needs",
                       description="Check the configured backend before a run: its store, its "
                       "engine or scheduler, credentials; one line per check, with what to do "
                       "for each failure. Exit status 0 when all hold, 1 otherwise.")
    p.add_argument("--backend", default=argparse.SUPPRESS, help="the backend to check")
    p.set_defaults(func=cmd_doctor)
    jobs.add_commands(sub)
    clean.add_command(sub)
    dashboard.add_command(sub)
    image = sub.add_parser("image", help="task and base images",
                           description="Task and base images.").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = image.add_parser("bootstrap", help="make a base image from Debian packages (needs root)",
                         description="Make a base image from Debian packages (needs root).")
    p.add_argument("--if-missing", action="store_true", help="only when no base image is present")
    p.set_defaults(func=cmd_image_bootstrap)
    for name, entry in sorted((groups or {}).items()):
        stub = sub.add_parser(name, help=entry.help or f"commands of the {entry.plugin} plugin",
                              add_help=False)
        stub.set_defaults(group=name)
    return top


def _group_parser(name: str, entry) -> argparse.ArgumentParser:
    """The parser of a plugin's command group, made by the plugin's configure(parser)."""
    group = argparse.ArgumentParser(prog=f"spmd {name}", description=entry.help or None)
    configure = entry.load()
    configure(group)
    return group


def main(argv: list[str] | None = None) -> int:
    from ..plugins import command_groups
    groups = command_groups()
    top = parser(groups)
    args, rest = top.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        group = getattr(args, "group", None)
        if group is not None:
            group_parser = _group_parser(group, groups[group])
            args = group_parser.parse_args(rest, namespace=args)
            if not hasattr(args, "func"):  # a group without a required subcommand
                group_parser.print_usage(sys.stderr)
                return EXIT_USAGE
        elif rest:
            top.error(f"unrecognized arguments: {' '.join(rest)}")
        return args.func(args)
    except SpmdError as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"spmd: error: {lines[0]}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILED
    except KeyboardInterrupt:
        print("spmd: interrupted; jobs keep running (spmd cancel JOB stops one)", file=sys.stderr)
        return 130
