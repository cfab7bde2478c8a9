"""The studio's JSON API: one method per route, over the run folders the server found.

Every write's body is checked here (``Studio.body``: origin, type, size, depth and keys);
the Host and the token of every request are checked before, by ``ued.studio.app.Guard``.
Runs are looked up by name, so no client-supplied path reaches the file system.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ued.config.config import ConfigError
from ued.human import inbox as inbox_lib
from ued.studio import levels as levels_lib
from ued.studio import runs as runs_lib

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024  # bytes of one request body
MAX_LEVEL_TEXT = 32 * 1024  # characters of one level's text
MAX_DEPTH = 16  # nesting of a request's JSON body (the API's bodies are flat objects)


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


# Errors as JSON ``{"error": ...}``: the API's own and an unknown path.
EXCEPTION_HANDLERS = {ApiError: _error, 404: _not_found}


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


class Studio:
    """The API: the runs folder, the token, one model per run and a method per route."""

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
        and the token are checked for every request by ``ued.studio.app.Guard``)."""
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

    # --- the routes ------------------------------------------------------------------------
    async def index(self, request: Request):
        return FileResponse(STATIC / "index.html")

    async def info(self, request: Request):
        return JSONResponse({"root": self.root.name, "token_required": self.token is not None})

    async def list_runs(self, request: Request):
        runs = runs_lib.find_runs(self.root)
        out = [runs_lib.run_summary(n, p) for n, p in runs.items()]
        return JSONResponse({"runs": out})

    async def run_info(self, request: Request):
        name = request.path_params["name"]
        run_dir = self.run_dir(name)
        model = self.model(name)
        exp = await run_in_threadpool(_experiment, model)
        summary = runs_lib.run_summary(name, run_dir)
        return JSONResponse({**summary, "family_info": levels_lib.family_info(exp)})

    async def metrics(self, request: Request):
        run_dir = self.run_dir(request.path_params["name"])
        since = _int_param(request, "since", 0, 0, 10**9)
        rows, next_line = runs_lib.read_metrics(run_dir, since)
        return JSONResponse({"rows": rows, "next": next_line})

    async def run_levels(self, request: Request):
        name = request.path_params["name"]
        model = self.model(name)
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

    async def run_inbox(self, request: Request):
        name = request.path_params["name"]
        run_dir = self.run_dir(name)
        model = self.model(name)
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

    async def check(self, request: Request):
        data = await self.body(request, {"level": str})
        model = self.model(request.path_params["name"])
        exp = await run_in_threadpool(_experiment, model)
        result = await run_in_threadpool(levels_lib.check, exp, data["level"])
        return JSONResponse(result)

    async def try_level(self, request: Request):
        data = await self.body(request, {"level": str, "episodes": int, "seed": int})
        episodes = data.get("episodes", 16)
        if not 1 <= episodes <= levels_lib.MAX_EPISODES:
            raise ApiError(400, f"'episodes'={episodes} must be in [1, {levels_lib.MAX_EPISODES}]")
        model = self.model(request.path_params["name"])

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

    async def send(self, request: Request):
        data = await self.body(request, {"level": str, "source": str})
        name = request.path_params["name"]
        model = self.model(name)
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

    def routes(self) -> list[BaseRoute]:
        """The page, its static files and the API."""
        return [
            Route("/", self.index),
            Route("/api/info", self.info),
            Route("/api/runs", self.list_runs),
            Route("/api/runs/{name}", self.run_info),
            Route("/api/runs/{name}/metrics", self.metrics),
            Route("/api/runs/{name}/levels", self.run_levels),
            Route("/api/runs/{name}/inbox", self.run_inbox),
            Route("/api/runs/{name}/check", self.check, methods=["POST"]),
            Route("/api/runs/{name}/try", self.try_level, methods=["POST"]),
            Route("/api/runs/{name}/send", self.send, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
