"""The studio's web app: a JSON API over run folders and the static page that uses it.

Built on Starlette (served by uvicorn): a small, well-kept ASGI toolkit with a test client,
static files and nothing we do not use; the API validates its own small bodies, so
FastAPI's model layer would add a dependency without removing code.

Security (see ``create_app``):

- Every request must name this server in its ``Host`` header: one of the addresses it was
  started on (the loopback names ``127.0.0.1``, ``localhost`` and ``::1`` for a server on
  loopback). A page on another name is refused, even one whose name an attacker points at
  127.0.0.1 (DNS rebinding), so it can neither read runs nor send levels.
- When the app has a token (always off loopback: ``scripts/studio.py`` makes one), every
  request must carry it: in ``X-Studio-Token``, in ``?token=`` (the URL the server prints),
  or in the cookie the page gets when it is opened with that URL (``HttpOnly``,
  ``SameSite=Strict``, so another site's page cannot use it).
- Every write (POST) must be JSON (``Content-Type: application/json``, so a cross-site form
  cannot post), must come from the page's own origin when the browser says where it comes
  from, and is at most ``MAX_BODY`` bytes of JSON nested at most ``MAX_DEPTH`` deep
  (checked by ``ued.studio.api``, whose methods answer the routes).

Runs are looked up by name among the folders the server found; no client-supplied path
reaches the file system.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette

from ued.studio.api import EXCEPTION_HANDLERS, MAX_BODY, MAX_DEPTH, Studio

TOKEN_HEADER = "X-Studio-Token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY_HOST = "*"  # a server on every interface: any Host, and the token on every request
MIN_TOKEN = 16  # characters of a token guarding a server off loopback
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~-]+$")  # safe in a URL and a cookie as it is


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8765`` -> ``::1``)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware checking every request's Host and, when there is a token, the token
    (see the module docstring); refusals are JSON ``{"error": ...}`` with 403 (or 400)."""

    def __init__(self, app, hosts: Iterable[str], token: str | None):
        self.app = app
        self.hosts = {h.lower().strip("[]") for h in hosts}
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if ANY_HOST not in self.hosts and host_name(host) not in self.hosts:
            allowed = ", ".join(sorted(self.hosts))
            return await _refuse(send, 403, f"this server answers to {allowed}, not to Host "
                                 f"{host!r} (a page on another name cannot use it)")  # fmt: skip
        port = host.rsplit(":", 1)[-1] if not host.endswith("]") and ":" in host else ""
        cookie_name = f"ued_studio_{port if port.isdigit() else 'default'}"
        if self.token is None:
            return await self.app(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cookies = _cookies(headers.get("cookie", ""))
        given = [headers.get(TOKEN_HEADER.lower()), *query.get("token", [])[:1],
                 cookies.get(cookie_name)]  # fmt: skip
        if not any(g is not None and _same(g, self.token) for g in given):
            return await _refuse(
                send, 403, f"this server needs its token (the ?token= of the URL it printed, "
                f"or the {TOKEN_HEADER} header)"
            )  # fmt: skip
        if scope.get("path") == "/" and query.get("token"):
            cookie = f"{cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"

            async def with_cookie(message):
                if message["type"] == "http.response.start":
                    extra = [(b"set-cookie", cookie.encode())]
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
                await send(message)

            return await self.app(scope, receive, with_cookie)
        return await self.app(scope, receive, send)


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out[name] = value
    return out


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


__all__ = ["MAX_BODY", "MAX_DEPTH", "TOKEN_HEADER", "Guard", "create_app"]


def create_app(
    root: str | Path, token: str | None = None, hosts: Iterable[str] = LOOPBACK
) -> Starlette:
    """The studio app over the runs in ``root`` (a run folder or a folder of runs).

    Args:
        root: where the runs are.
        token: when given, every request must carry it (see the module docstring).
        hosts: the names a request's ``Host`` may carry (without a port): the addresses
            the server listens on. The default is the loopback names; ``["*"]`` (a server
            on every interface) allows any and needs a token.

    Raises:
        ValueError: a server reachable off loopback without a token of at least
            ``MIN_TOKEN`` characters.
    """
    hosts = [h.lower().strip("[]") for h in hosts]
    if any(h not in LOOPBACK for h in hosts) and (token is None or len(token) < MIN_TOKEN):
        raise ValueError(
            f"a studio reachable off loopback ({', '.join(hosts)}) needs a token of at least "
            f"{MIN_TOKEN} characters: every request must carry it"
        )
    if token is not None and not TOKEN_CHARS.match(token):
        raise ValueError("a token is made of letters, digits and '-', '_', '.', '~'")
    studio = Studio(Path(root), token)
    app = Starlette(routes=studio.routes(), exception_handlers=EXCEPTION_HANDLERS)
    app.add_middleware(Guard, hosts=hosts, token=token)
    return app
