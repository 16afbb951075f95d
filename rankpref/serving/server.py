"""HTTP server for nearest items and recommendations (FastAPI app factory + uvicorn runner).

    rankpref serve --artifact runs/beauty/model [--index runs/beauty/index] [--port 8000]

The model and the item index are loaded once, before the socket opens (``load_service``);
requests share them under one lock, so concurrent requests are safe and a bad artifact or
index is refused at start-up, never mid-request.

Endpoints: ``GET /health``, ``GET /items/{id}``, ``GET /items/{id}/similar?k=``,
``POST /recommend`` (history of item ids -> user vector -> index search, seen items excluded),
``POST /search`` (free text, when the model has a text tower) and the OpenAPI docs at
``/docs`` and ``/openapi.json``. Unknown ids answer 404, invalid bodies 422 with one readable
line per problem, bodies over the limit 413, features the model lacks 501.

Optional hooks on the recommender object: ``explain(history: list[int], item_idx: int,
k: int) -> list[dict]`` and ``encode_queries(texts: list[str]) -> np.ndarray`` (query vectors
in item space). fastapi and uvicorn are imported only here (the ``serve`` extra).
"""


import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rankpref.errors import RankprefError, UnknownIdError
from rankpref.serving.index import ItemIndex, model_name, vectors_checksum

class Limits(BaseModel):
    """Request limits (validated; unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_k: int = Field(100, ge=1, description="largest k a request may ask for")
    max_history: int = Field(200, ge=1, description="longest history a request may send")
    max_body_bytes: int = Field(65536, ge=256, description="largest request body in bytes")
    max_query_chars: int = Field(1000, ge=1, description="longest free-text query")
    explain_k: int = Field(3, ge=1, le=50, description="reasons asked of the explain hook")


@dataclass
class Service:
    """A loaded model and its item index; requests hold ``lock`` while they use them."""

    rec: object
    index: ItemIndex
    model_name: str
    item_info: dict[str, dict]
    item_idx: dict[str, int] = field(default_factory=dict)  # id -> the model's item index
    explain_missing: str | None = None  # why explain is unavailable (None: available)
    text_missing: str | None = None  # why free-text search is unavailable
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def can_explain(self) -> bool:
        return self.explain_missing is None

    @property
    def can_search_text(self) -> bool:
        return self.text_missing is None

    def info(self, item_id: str) -> dict:
        return self.item_info.get(item_id, {})

    def indices(self, item_ids: list[str]) -> list[int]:
        """The model's item indices (looked up in a map built once at start-up)."""
        try:
            return [self.item_idx[i] for i in item_ids]
        except KeyError:
            unknown = list(dict.fromkeys(i for i in item_ids if i not in self.item_idx))
            shown = ", ".join(repr(u) for u in unknown[:10])
            more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
            raise UnknownIdError(f"unknown item id(s): {shown}{more}; the model knows "
                                 f"{len(self.item_idx):,} items") from None


def _item_info(rec) -> dict[str, dict]:
    items = getattr(rec, "items", None)
    if items is None or "item_id" not in getattr(items, "columns", []):
        return {}
    cols = [c for c in ("title", "brand", "categories") if c in items.columns]
    out = {}
    for row in items.select(["item_id", *cols]).iter_rows(named=True):
        out[str(row.pop("item_id"))] = row
    return out


def make_service(rec, index: ItemIndex | None = None) -> Service:
    """Pair a recommender with an index (an exact one from its item vectors when None)."""
    if index is None:
        index = ItemIndex.from_recommender(rec)
    else:
        if index.ids != list(rec.item_ids):
            raise RankprefError(f"the index holds {len(index):,} items that are not the model's "
                                f"{len(rec.item_ids):,} items in the same order; rebuild it "
                                "with `rankpref index build --artifact ...`")
        vectors = rec.item_vectors()
        if vectors.shape[1] != index.dim:
            raise RankprefError(f"the index has dimension {index.dim}, the model {vectors.shape[1]}")
        want = index.metadata.get("source_checksum")
        if want is not None and want != vectors_checksum(vectors):
            raise RankprefError("the index was built from other item vectors than this model's "
                                "(source checksum differs); rebuild it from this artifact")
    name = model_name(rec)
    explain_missing, text_missing = _probe_hooks(rec, name)
    ids = list(rec.item_ids)
    return Service(rec=rec, index=index, model_name=name, item_info=_item_info(rec),
                   item_idx=dict(zip(ids, rec.item_indices(ids))),
                   explain_missing=explain_missing, text_missing=text_missing)


def _probe_hooks(rec, name: str) -> tuple[str | None, str | None]:
    """Call the optional hooks once at start-up: a missing hook, or one that refuses with a
    RankprefError (e.g. a SASRec artifact), makes that feature answer 501."""
    explain = getattr(rec, "explain", None)
    encode = getattr(rec, "encode_queries", None)
    explain_missing = text_missing = None
    if not callable(explain):
        explain_missing = f"model {name!r} cannot explain its recommendations (no explain hook)"
    else:
        try:
            first = rec.item_indices([rec.item_ids[0]])[0]
            explain([first], first, 1)
        except UnknownIdError:
            raise
        except RankprefError as exc:
            explain_missing = f"model {name!r} cannot explain its recommendations: {exc}"
    if not callable(encode):
        text_missing = (f"model {name!r} has no text tower; free-text search needs a model "
                        "with encode_queries (e.g. PULSE)")
    else:
        try:
            encode(["probe"])
        except RankprefError as exc:
            text_missing = f"model {name!r} cannot encode free-text queries: {exc}"
    return explain_missing, text_missing


def load_service(artifact: str | Path, index_dir: str | Path | None = None) -> Service:
    """Load a trained artifact (and a saved index folder, checked against the model)."""
    from rankpref.tasks.next_item import Recommender

    rec = Recommender.load(artifact, command="rankpref serve")
    index = ItemIndex.load(index_dir) if index_dir is not None else None
    return make_service(rec, index)


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
    from fastapi.responses import JSONResponse
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

    @app.get("/health", summary="Liveness and what is loaded")
    async def health():
        return {"status": "ok", "model": service.model_name, "items": len(service.index),
                "dimension": service.index.dim, "index": service.index.describe(),
                "explain": service.can_explain, "text_search": service.can_search_text,
                "limits": limits.model_dump()}

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
        if not body.explain:
            _, ids, scores = ranked(body)
            return answer(body.k, results(ids, scores))
        if not service.can_explain:
            raise HTTPException(501, service.explain_missing)
        return answer(body.k, await run_in_threadpool(explained, body))

    def text_search(body) -> list[dict]:
        with service.lock:
            vectors = np.asarray(service.rec.encode_queries([body.query]), dtype=np.float32)
            if vectors.shape != (1, service.index.dim):
                raise RankprefError(f"the model's text tower gave shape {vectors.shape}, "
                                    f"expected (1, {service.index.dim})")
            ids, scores = service.index.search(vectors, body.k)
        return results(ids[0], scores[0])

    @app.post("/search", response_model=Results, response_model_exclude_none=True,
              summary="Items for a free-text query (models with a text tower)")
    async def search(body: SearchRequest):
        if not service.can_search_text:
            raise HTTPException(501, service.text_missing)
        return answer(body.k, await run_in_threadpool(text_search, body))

    return app


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
               f"(docs at /docs)", err=True)
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
