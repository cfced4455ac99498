"""``spmd dashboard``: serve the jobs of the selected store to a browser, until interrupted."""
from __future__ import annotations

import sys

EXIT_OK = 0


def cmd_dashboard(args) -> int:
    from ..plugins import open_backend
    from ..dashboard.server import LOOPBACK, Dashboard
    from . import settings_of
    backend = open_backend(settings_of(args))
    board = Dashboard(backend, host=args.host, port=args.port)
    if args.host not in LOOPBACK:
        print(f"spmd: warning: serving on {args.host}, beyond this machine: the token is then "
              "the only protection; anyone who has the URL can see the jobs and cancel them",
              file=sys.stderr)
    print(f"spmd dashboard of {backend.store.url}\n  {board.url}\n(Ctrl-C stops it)", flush=True)
    try:
        board.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return EXIT_OK


def add_command(sub) -> None:
    """Add ``dashboard`` to the top parser's subparsers."""
    p = sub.add_parser("dashboard", help="watch jobs in a browser (a local web server)",
                       description="Serve the jobs of the selected store to a browser: their "
                       "counts, live timelines, failures, logs and memory, and Cancel. Prints a "
                       "URL with a random token; every request needs it.")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only)")
    p.set_defaults(func=cmd_dashboard)
