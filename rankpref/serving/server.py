"""HTTP server for nearest items, recommendations and free-text search (FastAPI app factory
+ uvicorn runner), with a page to try them at ``/``.

    rankpref serve --artifact runs/beauty/model [--index runs/beauty/index] [--port 8000]

The model and the item index are loaded once, before the socket opens
(:func:`~rankpref.serving.service.load_service`); requests share them under one lock, so
concurrent requests are safe and a bad artifact or index is refused at start-up, never
mid-request. Next-item and SESA artifacts can be served.

Endpoints: ``GET /`` (the page), ``GET /health``, ``GET /items/{id}``,
``GET /items/{id}/similar?k=``, ``GET /users/{id}`` (a known user's history),
``POST /recommend`` (history of item ids -> user vector -> index search, seen items excluded;
``explain`` adds PULSE's nearest training rationales), ``POST /search`` (free text, when the
model has a text tower; ``explain`` adds SESA's concept contributions) and the OpenAPI docs
at ``/docs`` and ``/openapi.json``. Unknown ids answer 404, invalid bodies 422 with one
readable line per problem, bodies over the limit 413, features the model lacks 501.
fastapi and uvicorn are imported only here (the ``serve`` extra).
"""


import ipaddress
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rankpref.errors import RankprefError, UnknownIdError
from rankpref.serving.service import Service, load_service, make_service

__all__ = ["Limits", "Service", "create_app", "load_service", "make_service", "run_server"]

class Limits(BaseModel):
    """Request limits (validated; unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_k: int = Field(100, ge=1, description="largest k a request may ask for")
    max_history: int = Field(200, ge=1, description="longest history a request may send")
    max_body_bytes: int = Field(65536, ge=256, description="largest request body in bytes")
    max_query_chars: int = Field(1000, ge=1, description="longest free-text query")
    explain_k: int = Field(3, ge=1, le=50, description="reasons asked of the explain hook")


# ---------------------------------------------------------------------- body-size limit


class BodyLimit:
    """ASGI middleware: answer 413 when a request body is larger than ``max_bytes``."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await _reply(send, 400, "Content-Length is not a number")
            if declared > self.max_bytes:
                return await _reply(send, 413, f"request body of {declared} bytes is over the "
                                    f"limit of {self.max_bytes} bytes")
            return await self.app(scope, receive, send)
        # no Content-Length (chunked): read up to the limit, then replay the body
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await _reply(send, 413, f"request body is over the limit of "
                                    f"{self.max_bytes} bytes")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _reply(send, status: int, detail: str) -> None:
    import json

    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


# ---------------------------------------------------------------------- the app


def _validation_detail(errors) -> list[dict]:
    out = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "")
        if err.get("type") == "json_invalid":
            msg = f"malformed JSON ({err.get('ctx', {}).get('error', 'decode error')})"
        out.append({"field": loc, "message": msg})
    return out


def create_app(service: Service, limits: Limits | None = None):
    """The FastAPI application for one loaded :class:`Service`."""
    from typing import Annotated

    from fastapi import FastAPI, HTTPException, Path as PathParam, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from pydantic import StrictBool, StrictInt, StrictStr

    limits = limits or Limits()
    k_type = Annotated[StrictInt, Field(ge=1, le=limits.max_k, description="results wanted")]
    item_id_type = Annotated[StrictStr, Field(min_length=1, max_length=200)]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class RecommendRequest(Strict):
        history: list[item_id_type] = Field(..., min_length=1, max_length=limits.max_history,
                                            description="item ids the user interacted with, "
                                            "oldest first")
        k: k_type = 10
        exclude_seen: StrictBool = Field(True, description="leave the history's items out")
        explain: StrictBool = Field(False, description="ask the model why (501 when it "
                                    "cannot)")

    class SearchRequest(Strict):
        query: StrictStr = Field(..., min_length=1, max_length=limits.max_query_chars)
        k: k_type = 10
        explain: StrictBool = Field(False, description="the concepts behind each score (SESA; "
                                    "501 when the model cannot)")

    class Result(BaseModel):
        rank: int
        item_id: str
        score: float
        title: str | None = None
        explanation: list[dict] | None = None

    class Results(BaseModel):
        model: str
        k: int
        results: list[Result]

    app = FastAPI(title="rankpref", version="1",
                  description=f"Nearest items and recommendations from a `{service.model_name}` "
                  f"model over {len(service.index):,} items.")
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        detail = _validation_detail(exc.errors())
        text = "; ".join(f"{d['field']}: {d['message']}" for d in detail)
        return JSONResponse(status_code=422, content={"detail": detail,
                                                      "error": f"invalid request: {text}"})

    @app.exception_handler(UnknownIdError)
    async def _unknown(request: Request, exc: UnknownIdError):
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(RankprefError)
    async def _bad(request: Request, exc: RankprefError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    def results(ids: list[str], scores: np.ndarray, explanations=None) -> list[dict]:
        rows = [{"rank": r + 1, "item_id": i, "score": round(float(s), 6),
                 "title": service.info(i).get("title")} for r, (i, s) in enumerate(zip(ids, scores))]
        if explanations is not None:
            for row, why in zip(rows, explanations):
                row["explanation"] = why
        return rows

    def answer(k: int, rows: list[dict]) -> JSONResponse:
        # a Response is sent as is: FastAPI skips re-validating it against the response model
        # (which still documents it in OpenAPI)
        return JSONResponse({"model": service.model_name, "k": k, "results": rows})

    def known(item_id: str) -> None:
        if item_id not in service.index:
            raise UnknownIdError(f"unknown item id {item_id!r}; the model knows "
                                 f"{len(service.index):,} items")

    # The cheap endpoints are `async def`: their work (well under a millisecond) runs on the
    # event loop, one request at a time, with no thread hop. The ones that may call slow
    # model hooks (explain, a text tower) run in the thread pool. All share `service.lock`.

    def require(feature: str) -> None:
        if not service.can(feature):
            raise HTTPException(501, service.missing[feature])

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(page_html())

    @app.get("/health", summary="Liveness and what is loaded")
    async def health():
        return {"status": "ok", "model": service.model_name, "items": len(service.index),
                "dimension": service.index.dim, "index": service.index.describe(),
                **{feature: service.can(feature) for feature in service.FEATURES},
                "unavailable": service.missing, "limits": limits.model_dump()}

    @app.get("/items/{item_id}", summary="One item's metadata")
    async def item(item_id: Annotated[str, PathParam(max_length=200)]):
        known(item_id)
        return {"item_id": item_id, **service.info(item_id)}

    @app.get("/items/{item_id}/similar", response_model=Results,
             summary="Nearest items to an item (itself excluded)")
    async def similar(item_id: Annotated[str, PathParam(max_length=200)],
                      k: Annotated[int, Query(ge=1, le=limits.max_k)] = 10):
        known(item_id)
        with service.lock:
            ids, scores = service.index.search(service.index.vector(item_id)[None, :], k,
                                               exclude=[[item_id]])
        return answer(k, results(ids[0], scores[0]))

    def history_of(user_id: str) -> dict:
        # not under service.lock: the first call reads the data (slow on a big catalogue),
        # and the served model guards that itself
        ids = service.rec.user_history(user_id)  # UnknownIdError -> 404
        ids = ids[-limits.max_history:]
        return {"user_id": user_id, "history": [
            {"item_id": i, "title": service.info(i).get("title")} for i in ids]}

    @app.get("/users/{user_id}", summary="A known user's history (the latest max_history "
             "items, oldest first)")
    async def user(user_id: Annotated[str, PathParam(max_length=200)]):
        require("users")
        return await run_in_threadpool(history_of, user_id)

    def ranked(body) -> tuple[list[int], list[str], np.ndarray]:
        with service.lock:
            history = service.indices(body.history)  # UnknownIdError -> 404
            user = service.rec.user_vectors([history])
            ids, scores = service.index.search(user, body.k, exclude=(
                [body.history] if body.exclude_seen else None))
        return history, ids[0], scores[0]

    def explained(body):
        history, ids, scores = ranked(body)
        with service.lock:
            targets = service.indices(ids)
            why = [service.rec.explain(history, t, limits.explain_k) for t in targets]
        return results(ids, scores, why)

    @app.post("/recommend", response_model=Results, response_model_exclude_none=True,
              summary="Top-k next items after a history")
    async def recommend(body: RecommendRequest):
        require("recommend")
        if not body.explain:
            _, ids, scores = ranked(body)
            return answer(body.k, results(ids, scores))
        require("explain")
        return answer(body.k, await run_in_threadpool(explained, body))

    def text_search(body) -> list[dict]:
        with service.lock:
            vectors = np.asarray(service.rec.encode_queries([body.query]), dtype=np.float32)
            if vectors.shape != (1, service.index.dim):
                raise RankprefError(f"the model's text tower gave shape {vectors.shape}, "
                                    f"expected (1, {service.index.dim})")
            ids, scores = service.index.search(vectors, body.k)
            why = ([service.rec.explain_query(body.query, i, limits.explain_k) for i in ids[0]]
                   if body.explain else None)
        return results(ids[0], scores[0], why)

    @app.post("/search", response_model=Results, response_model_exclude_none=True,
              summary="Items for a free-text query (models with a text tower)")
    async def search(body: SearchRequest):
        require("text_search")
        if body.explain:
            require("query_explain")
        return answer(body.k, await run_in_threadpool(text_search, body))

    return app


def page_html() -> str:
    """The page at ``/``: one self-contained HTML file (no build step, no CDN)."""
    from importlib.resources import files

    return files("rankpref.serving").joinpath("page.html").read_text("utf-8")


def run_server(artifact: str | Path, *, index_dir: str | Path | None = None,
               host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
               threads: int = 1, log_level: str = "warning") -> None:
    """Load once, then serve with uvicorn (one process; blocks until interrupted)."""
    import faiss
    import typer

    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise RankprefError(f"the server needs the serve extra ({exc.name} is missing): "
                            "pip install 'rankpref[serve]'") from None

    from rankpref.settings import set_threads

    set_threads(threads)
    faiss.omp_set_num_threads(threads)
    service = load_service(artifact, index_dir)
    app = create_app(service, limits)
    sock = listening_socket(host, port)  # bound first: "serving" is said only once it is true
    port = sock.getsockname()[1]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        typer.echo(f"warning: binding {host}: the server has no authentication", err=True)
    typer.echo(f"serving {service.model_name} ({len(service.index):,} items, index "
               f"{service.index.factory}/{service.index.metric}) on http://{host}:{port} "
               f"(page at /, API docs at /docs)", err=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, workers=1))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def listening_socket(host: str, port: int):
    """A socket bound to ``host:port`` (port 0: any free one), or a one-line RankprefError."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise RankprefError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise RankprefError(f"cannot listen on {host}:{port}: "
                            f"{exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock
