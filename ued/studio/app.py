"""The studio's web app: a JSON API over run folders and the static page that uses it.

Built on Starlette (served by uvicorn): a small, well-kept ASGI toolkit with a test client,
static files and nothing we do not use; the API validates its own small bodies, so
FastAPI's model layer would add a dependency without removing code.

Security (see ``create_app``): every write (POST) must be JSON (``Content-Type:
application/json``, so a cross-site form cannot post), must come from the page's own origin
when the browser says where it comes from, is at most ``MAX_BODY`` bytes, and, when the
app has a token, must carry it in ``X-Studio-Token``. Runs are looked up by name among the
folders the server found; no client-supplied path reaches the file system.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

import jax
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ued import inbox as inbox_lib
from ued.config import ConfigError
from ued.studio import levels as levels_lib
from ued.studio import runs as runs_lib

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024  # bytes of one request body
MAX_LEVEL_TEXT = 32 * 1024  # characters of one level's text
TOKEN_HEADER = "X-Studio-Token"


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
        """The checked JSON body of a write: token, origin, type, size and keys."""
        if self.token is not None:
            given = request.headers.get(TOKEN_HEADER, "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise ApiError(403, f"this server needs its token in the {TOKEN_HEADER} header")
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
        try:
            data = json.loads(raw or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ApiError(400, f"the body is not valid JSON ({err})") from None
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


def create_app(root: str | Path, token: str | None = None) -> Starlette:
    """The studio app over the runs in ``root`` (a run folder or a folder of runs).

    Args:
        root: where the runs are.
        token: when given, every write must carry it (``X-Studio-Token``).
    """
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
                archive = None
                if levels_lib.has_archive(exp):
                    with model.lock:
                        if model.archive_view is None or model.archive_view.exp is not exp:
                            model.archive_view = levels_lib.ArchiveView(exp)
                        archive = model.archive_view
                out["curriculum"] = levels_lib.curriculum_levels(exp, state, seed, limit, archive)
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
        return JSONResponse({"pending": pending, "events": events, "checkpoint": step})

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
                raise ApiError(409, "the run has no checkpoint yet: no policy to try")
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
        msg_id = inbox_lib.send(model.run_dir, text, data.get("source", "studio"))
        status = runs_lib.run_summary(name, model.run_dir)["status"]
        note = "" if status == "running" else "the run is not running: resume it to apply this"
        return JSONResponse({"id": msg_id, "text": text, "note": note})

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
    return Starlette(routes=routes, exception_handlers={ApiError: _error, 404: _not_found})
