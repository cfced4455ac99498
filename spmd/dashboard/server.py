"""``spmd dashboard``'s web server: the standard library's threading HTTP server, guarded as
Jupyter guards its own.

    GET  /?token=T                  sets a cookie (HttpOnly, SameSite=Strict), the jobs page
    GET  /job/<id>                  the live job page          GET /report/<id>.html the HTML report
    GET  /api/jobs[/<id>]           JSON views (spmd.dashboard.views)
    GET  /api/jobs/<id>/live        the job page's sections
    GET  /api/jobs/<id>/items/<i>[/log?offset=N]
    POST /api/jobs/<id>/cancel      the only request that changes anything

Every request needs the token: in the query, the cookie or the ``X-Spmd-Token`` header. A POST
needs the header (a page of another site cannot set it, nor can a form), an Origin, if sent,
that is this server, and a Host that names this server (against DNS rebinding). It binds
127.0.0.1 unless told otherwise. The standard library is enough for a page per job polled
every two seconds, and adds nothing to install.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ..backend import Backend
from ..errors import JobNotFound, SpmdError
from .. import html_report
from . import pages
from .views import Views

log = logging.getLogger("spmd.dashboard")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_JOB_ID = r"(?P<job>[A-Za-z0-9._-]+)"
ROUTES = [
    ("GET", re.compile(r"/"), "jobs_page"),
    ("GET", re.compile(rf"/job/{_JOB_ID}"), "job_page"),
    ("GET", re.compile(rf"/report/{_JOB_ID}\.html"), "report_file"),
    ("GET", re.compile(r"/static/dashboard\.js"), "script"),
    ("GET", re.compile(r"/api/jobs"), "api_jobs"),
    ("GET", re.compile(rf"/api/jobs/{_JOB_ID}"), "api_job"),
    ("GET", re.compile(rf"/api/jobs/{_JOB_ID}/live"), "api_live"),
    ("GET", re.compile(rf"/api/jobs/{_JOB_ID}/items/(?P<item>\d+)"), "api_item"),
    ("GET", re.compile(rf"/api/jobs/{_JOB_ID}/items/(?P<item>\d+)/log"), "api_log"),
    ("POST", re.compile(rf"/api/jobs/{_JOB_ID}/cancel"), "api_cancel"),
]
#: what a page may load: only this server's script; no frames, no form posts elsewhere
CSP = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
#: the HTML report is one file with its own inline script, and fetches nothing
REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "frame-ancestors 'none'")


class Dashboard:
    """A running dashboard over one backend's store; ``url`` holds its token."""

    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None):
        self.views = Views(backend)
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}/?token={self.token}"

    @property
    def cookie_name(self) -> str:
        return f"spmd-dashboard-{self.port}"

    def allowed_hosts(self) -> set[str] | None:
        """Host headers this server answers to; None: any (bound beyond the loopback)."""
        if self.host not in LOOPBACK:
            return None
        return {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}

    def start(self) -> "Dashboard":
        """Serve in a daemon thread (tests, notebooks); ``serve_forever`` blocks instead."""
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="spmd-dashboard")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        board = dashboard
    return Handler


class _Handler(BaseHTTPRequestHandler):
    board: Dashboard
    server_version = "spmd-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # not the token in the query
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- the guard ------------------------------------------------------------------------------

    def _refusal(self, method: str, query: dict) -> str:
        """Why this request is refused, '' if it is not."""
        allowed = self.board.allowed_hosts()
        if allowed is not None and self.headers.get("Host", "") not in allowed:
            return "this server answers only to its own address"
        given = self.headers.get("X-Spmd-Token", "")
        if method == "POST":
            origin = self.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != self.headers.get("Host", ""):
                return "a request from another site"
            if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
                return "a request from another site"
        else:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
            morsel = cookie.get(self.board.cookie_name)
            given = given or (query.get("token") or [""])[0] or (morsel.value if morsel else "")
        if not given or not hmac.compare_digest(given.encode(), self.board.token.encode()):
            return "the token is missing or wrong: open the URL spmd dashboard printed"
        return ""

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        refusal = self._refusal(method, query)
        if refusal:
            return self._send(HTTPStatus.FORBIDDEN, {"error": refusal})
        for verb, pattern, name in ROUTES:
            found = pattern.fullmatch(parts.path)
            if verb == method and found:
                try:
                    return getattr(self, name)(query, **found.groupdict())
                except JobNotFound as exc:
                    return self._send(HTTPStatus.NOT_FOUND, {"error": str(exc)})
                except (IndexError, ValueError) as exc:
                    return self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                except SpmdError as exc:
                    return self._send(HTTPStatus.BAD_GATEWAY, {"error": f"{type(exc).__name__}: {exc}"})
                except Exception as exc:  # one broken view does not stop the server
                    log.exception("dashboard: %s %s", method, parts.path)
                    return self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                                      {"error": f"{type(exc).__name__}: {exc}"})
        self._send(HTTPStatus.NOT_FOUND if method == "GET" else HTTPStatus.METHOD_NOT_ALLOWED,
                   {"error": f"no such page: {method} {parts.path}"})

    def _send(self, status: HTTPStatus, body: Any, kind: str = "application/json",
              csp: str = CSP, cookie: bool = False) -> None:
        data = (json.dumps(body) if kind == "application/json" else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the token is in the first URL
        if cookie:
            self.send_header("Set-Cookie", f"{self.board.cookie_name}={self.board.token}; Path=/; "
                                           "HttpOnly; SameSite=Strict")
        self.end_headers()
        self.wfile.write(data)

    # -- pages ----------------------------------------------------------------------------------

    def jobs_page(self, query: dict) -> None:
        self._send(HTTPStatus.OK, pages.jobs_page(self.board.token, self.board.views.backend.store.url),
                   "text/html", cookie=True)

    def job_page(self, query: dict, job: str) -> None:
        self.board.views.job(job)  # 404 for an unknown job
        self._send(HTTPStatus.OK, pages.job_page(self.board.token, job, f"/report/{quote(job)}.html"),
                   "text/html", cookie=True)

    def report_file(self, query: dict, job: str) -> None:
        self._send(HTTPStatus.OK, html_report.document(self.board.views.report(job)), "text/html",
                   csp=REPORT_CSP)

    def script(self, query: dict) -> None:
        self._send(HTTPStatus.OK, pages.SCRIPT, "text/javascript")

    def api_jobs(self, query: dict) -> None:
        limit = int((query.get("limit") or ["100"])[0])
        self._send(HTTPStatus.OK, self.board.views.jobs(limit))

    def api_job(self, query: dict, job: str) -> None:
        self._send(HTTPStatus.OK, self.board.views.summary(self.board.views.job(job).manifest))

    def api_live(self, query: dict, job: str) -> None:
        self._send(HTTPStatus.OK, self.board.views.live(job))

    def api_item(self, query: dict, job: str, item: str) -> None:
        self._send(HTTPStatus.OK, self.board.views.item(job, int(item)))

    def api_log(self, query: dict, job: str, item: str) -> None:
        offset = int((query.get("offset") or ["0"])[0])
        self._send(HTTPStatus.OK, self.board.views.log(job, int(item), offset))

    def api_cancel(self, query: dict, job: str) -> None:
        log.warning("dashboard: cancel of job %s", job)
        self._send(HTTPStatus.OK, self.board.views.cancel(job))
