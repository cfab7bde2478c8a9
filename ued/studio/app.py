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
  from, and is at most ``MAX_BODY`` bytes of JSON nested at most ``MAX_DEPTH`` deep.

Runs are looked up by name among the folders the server found; no client-supplied path
reaches the file system.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jax
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ued.config.config import ConfigError
from ued.human import inbox as inbox_lib
from ued.studio import levels as levels_lib
from ued.studio import runs as runs_lib

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024  # bytes of one request body
MAX_LEVEL_TEXT = 32 * 1024  # characters of one level's text
MAX_DEPTH = 16  # nesting of a request's JSON body (the API's bodies are flat objects)
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


def _depth(raw: bytes) -> int:
    """How deep JSON text nests, counted without parsing it (brackets outside strings)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


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


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _error(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


def _experiment(model: runs_lib.RunModel):
    """The run's experiment; a config this install cannot build is a 422 naming why."""
    try:
        return model.experiment()
    except ConfigError as err:
        raise ApiError(422, f"cannot build the run's experiment: {err}") from None


def _not_found(request: Request, _exc) -> JSONResponse:
    return JSONResponse({"error": f"no such path: {request.url.path}"}, status_code=404)


class Studio:
    """The state behind the app: the runs folder, the token and one model per run."""

    def __init__(self, root: Path, token: str | None):
        self.root = Path(root).resolve()
        self.token = token
        self.models: dict[str, runs_lib.RunModel] = {}

    def run_dir(self, name: str) -> Path:
        runs = runs_lib.find_runs(self.root)
        if name not in runs:
            raise ApiError(404, f"no run named {name!r}; runs: {sorted(runs)}")
        return runs[name]

    def model(self, name: str) -> runs_lib.RunModel:
        run_dir = self.run_dir(name)
        if name not in self.models or self.models[name].run_dir != run_dir:
            self.models[name] = runs_lib.RunModel(run_dir)
        return self.models[name]

    async def body(self, request: Request, allowed: dict[str, type]) -> dict[str, Any]:
        """The checked JSON body of a write: origin, type, size, depth and keys (the Host
        and the token are checked for every request by ``Guard``)."""
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise ApiError(403, f"writes from origin {origin!r} are refused")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            raise ApiError(413, f"the body is over {MAX_BODY} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise ApiError(413, f"the body is over {MAX_BODY} bytes")
        if _depth(raw) > MAX_DEPTH:
            raise ApiError(400, f"the body's JSON nests deeper than {MAX_DEPTH} levels")
        try:
            data = json.loads(raw or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ApiError(400, f"the body is not valid JSON ({err})") from None
        except RecursionError:
            raise ApiError(400, "the body's JSON nests too deeply") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ApiError(400, f"unknown key {unknown[0]!r}; allowed: {sorted(allowed)}")
        for key, kind in allowed.items():
            if key in data and (
                not isinstance(data[key], kind) or isinstance(data[key], bool) and kind is int
            ):
                raise ApiError(400, f"{key!r} must be a {kind.__name__}, got {data[key]!r}")
        level = data.get("level")
        if "level" in allowed:
            if not isinstance(level, str) or not level.strip():
                raise ApiError(400, "'level' (the level in the family's text format) is missing")
            if len(level) > MAX_LEVEL_TEXT:
                raise ApiError(413, f"'level' is over {MAX_LEVEL_TEXT} characters")
        return data


def not_running(status: str) -> str:
    """What a sender must know about a run that is not training now ("" while it is)."""
    if status == "running":
        return ""
    return (
        f"the run is {status}: nothing reads sent levels until it is resumed "
        "(scripts/train.py with run.resume=true); they wait in its inbox"
    )


def _int_param(request: Request, key: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(key)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{key}={value!r} must be an integer in [{low}, {high}]") from None
    if not low <= number <= high:
        raise ApiError(400, f"{key}={number} must be in [{low}, {high}]")
    return number


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

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    async def info(request: Request):
        return JSONResponse({"root": studio.root.name, "token_required": token is not None})

    async def list_runs(request: Request):
        runs = runs_lib.find_runs(studio.root)
        out = [runs_lib.run_summary(n, p) for n, p in runs.items()]
        return JSONResponse({"runs": out})

    async def run_info(request: Request):
        name = request.path_params["name"]
        run_dir = studio.run_dir(name)
        model = studio.model(name)
        exp = await run_in_threadpool(_experiment, model)
        summary = runs_lib.run_summary(name, run_dir)
        return JSONResponse({**summary, "family_info": levels_lib.family_info(exp)})

    async def metrics(request: Request):
        run_dir = studio.run_dir(request.path_params["name"])
        since = _int_param(request, "since", 0, 0, 10**9)
        rows, next_line = runs_lib.read_metrics(run_dir, since)
        return JSONResponse({"rows": rows, "next": next_line})

    async def run_levels(request: Request):
        name = request.path_params["name"]
        model = studio.model(name)
        seed = _int_param(request, "seed", 0, 0, 1023)
        limit = _int_param(request, "limit", 16, 1, levels_lib.MAX_BUFFER_LEVELS)

        def work():
            exp = _experiment(model)
            rows = runs_lib.tail_rows(model.run_dir)
            last_eval = next((r for r in reversed(rows) if "eval/solve_rate" in r), {})
            out: dict[str, Any] = {
                "named": levels_lib.named_levels(exp, last_eval),
                "checkpoint": None,
                "curriculum": {"kind": "none", "levels": [], "size": 0, "capacity": 0},
            }
            latest = model.latest()
            if latest is not None:
                step, state, _ = latest
                out["checkpoint"] = step
                out["curriculum"] = levels_lib.curriculum_levels(exp, state, seed, limit)
            return out

        return JSONResponse(await run_in_threadpool(work))

    async def run_inbox(request: Request):
        name = request.path_params["name"]
        run_dir = studio.run_dir(name)
        model = studio.model(name)
        pending = [p.stem for p in inbox_lib.pending(run_dir)]
        events = inbox_lib.read_events(run_dir)[-200:]

        def where():
            # Where each accepted level is in the newest checkpoint's curriculum, if there.
            latest = model.latest()
            if latest is None:
                return None, {}
            step, state, _ = latest
            with model.lock:
                if model.located is None or model.located[0] != step:
                    model.located = (step, levels_lib.locate(model.experiment(), state))
                return step, model.located[1]

        step, located = await run_in_threadpool(where)
        for event in events:
            if not event.get("accepted"):
                continue
            path = run_dir / inbox_lib.INBOX / inbox_lib.APPLIED / f"{event['id']}.json"
            try:
                text = inbox_lib.read_message(path)["level"]
            except (OSError, ValueError):
                continue
            event["text"] = text
            event["found"] = located.get(text)
        status = runs_lib.run_summary(name, run_dir)["status"]
        return JSONResponse({"pending": pending, "events": events, "checkpoint": step,
                             "status": status, "note": not_running(status)})  # fmt: skip

    async def check(request: Request):
        data = await studio.body(request, {"level": str})
        model = studio.model(request.path_params["name"])
        exp = await run_in_threadpool(_experiment, model)
        result = await run_in_threadpool(levels_lib.check, exp, data["level"])
        return JSONResponse(result)

    async def try_level(request: Request):
        data = await studio.body(request, {"level": str, "episodes": int, "seed": int})
        episodes = data.get("episodes", 16)
        if not 1 <= episodes <= levels_lib.MAX_EPISODES:
            raise ApiError(400, f"'episodes'={episodes} must be in [1, {levels_lib.MAX_EPISODES}]")
        model = studio.model(request.path_params["name"])

        def work():
            exp = _experiment(model)
            try:
                level = inbox_lib.parse_level(exp.family, exp.env, data["level"])
            except ValueError as err:
                raise ApiError(400, f"bad level: {err}") from None
            latest = model.latest()
            if latest is None:
                why = f" ({model.unreadable})" if model.unreadable else ""
                message = f"the run has no readable checkpoint yet{why}: no policy to try"
                raise ApiError(409, message)
            step, state, _ = latest
            with model.lock:
                if episodes not in model.evaluators:
                    model.evaluators[episodes] = levels_lib.Tryout(exp, episodes)
                tryout = model.evaluators[episodes]
            params = levels_lib.student_params(exp, state, data.get("seed", 0))
            key = jax.random.PRNGKey(len(data["level"]) + step)
            return {**tryout(key, params, level), "checkpoint": step}

        return JSONResponse(await run_in_threadpool(work))

    async def send(request: Request):
        data = await studio.body(request, {"level": str, "source": str})
        name = request.path_params["name"]
        model = studio.model(name)
        exp = await run_in_threadpool(_experiment, model)
        try:
            level = inbox_lib.parse_level(exp.family, exp.env, data["level"])
        except ValueError as err:
            raise ApiError(400, f"bad level: {err}") from None
        text = exp.family.level_to_text(exp.env, level)
        try:
            msg_id = inbox_lib.send(model.run_dir, text, data.get("source", "studio"))
        except OSError as err:
            raise ApiError(409, f"cannot write to the run's inbox: {err}") from None
        status = runs_lib.run_summary(name, model.run_dir)["status"]
        return JSONResponse({"id": msg_id, "text": text, "note": not_running(status)})

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/runs", list_runs),
        Route("/api/runs/{name}", run_info),
        Route("/api/runs/{name}/metrics", metrics),
        Route("/api/runs/{name}/levels", run_levels),
        Route("/api/runs/{name}/inbox", run_inbox),
        Route("/api/runs/{name}/check", check, methods=["POST"]),
        Route("/api/runs/{name}/try", try_level, methods=["POST"]),
        Route("/api/runs/{name}/send", send, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={ApiError: _error, 404: _not_found})
    app.add_middleware(Guard, hosts=hosts, token=token)
    return app
