"""Who the lab answers: its own page only. A plain ASGI middleware (so event streams flow
unbuffered) and the names a bound address answers to."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

# Names a loopback-bound lab answers to: a page reached under any other Host header was
# loaded from another site's name (DNS rebinding) and is refused.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """The Host names a lab bound to `host` answers to: loopback's names on loopback, the
    address it was given otherwise; None (any name) for a wildcard bind (0.0.0.0, ::), where
    the machine's names are not known and the token alone keeps other pages out."""
    name = host.strip("[]").lower()
    if name in ("0.0.0.0", "::", ""):
        return None
    if is_loopback(name):
        return LOOPBACK_NAMES + ((name,) if name not in LOOPBACK_NAMES else ())
    return (name,)


def is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def host_name(header: str) -> str | None:
    """The name in a Host header ('127.0.0.1:8765', '[::1]:8765', 'localhost'), lowercased;
    None where it is not one."""
    try:
        parts = urlsplit("//" + header)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        return None
    return parts.hostname


class Guard:
    """Every request passes here first (a plain ASGI middleware, so event streams flow
    unbuffered). Refused: a Host that is not the lab's own (DNS rebinding: another site's
    name resolved to 127.0.0.1), a missing or wrong token, and a state-changing call that
    is not a JSON body from the lab's own page (cross-site request forgery). A refusal says
    why in a sentence and gives nothing away: no path, no run, no config."""

    def __init__(self, app, token: str, hosts: tuple[str, ...] | None):
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        why = self.refusal(Request(scope))
        if why is not None:
            status, message = why
            return await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
        return await self.app(scope, receive, send)

    def refusal(self, request) -> tuple[int, str] | None:
        host = request.headers.get("host", "")
        name = host_name(host)
        if name is None or (self.hosts is not None and name not in self.hosts):
            return 421, "this lab answers only requests addressed to its own host name"
        if request.url.path.startswith("/static/"):
            return None  # the page's script and style: public, no state, nothing of the user's
        given = request.query_params.get("token") or request.headers.get("x-dlx-token") or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return 403, "this lab needs its access token: open the URL that dlx lab printed (with its ?token=)"
        if request.method not in ("GET", "HEAD"):
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return 415, "a state-changing request must be a JSON body (Content-Type: application/json)"
            origin = request.headers.get("origin")
            if origin is not None and origin.lower() != f"{request.url.scheme}://{host}".lower():
                return 403, "this lab takes state-changing requests only from its own page"
        return None
