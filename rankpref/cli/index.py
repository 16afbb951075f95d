"""``rankpref index`` (FAISS item index) and ``rankpref serve`` (HTTP server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from rankpref.cli.common import friendly
from rankpref.errors import RankprefError

index_app = typer.Typer(no_args_is_help=True, help="Build, search and check FAISS item indexes.")

FACTORY_OPT = typer.Option("Flat", help="FAISS factory string: Flat (exact), HNSW32, "
                           "IVF1024,Flat, IVF256,PQ16 ...")
PARAMS_OPT = typer.Option("", "--search-params", help="search-time FAISS parameters, "
                          "e.g. nprobe=32 or efSearch=128")


def _threads(threads: int) -> None:
    import faiss

    from rankpref.settings import set_threads

    set_threads(threads)
    faiss.omp_set_num_threads(threads)


def _read_ids(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RankprefError(f"{path}: ids file not found") from None
    except UnicodeDecodeError:
        raise RankprefError(f"{path}: ids file is not UTF-8 text") from None
    return [line.strip() for line in lines if line.strip()]


def _read_vectors(path: Path):
    import numpy as np

    if path.suffix != ".npy":
        raise RankprefError(f"{path}: --vectors must be a .npy file (numpy.save)")
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RankprefError(f"{path}: vectors file not found") from None
    except ValueError as exc:  # includes object arrays, which would need pickle
        raise RankprefError(f"{path}: cannot read a numeric matrix ({exc})") from None


def _recall_report(index, queries: int, k: int, seed: int) -> dict:
    from rankpref.serving.index import recall_check, sample_item_queries

    q, exclude = sample_item_queries(index, queries, seed=seed)
    return recall_check(index, q, k, exclude)


@index_app.command("build")
@friendly
def index_build(
        out: Path = typer.Option(..., help="index folder to write (atomically)"),
        artifact: Optional[Path] = typer.Option(None, help="a trained artifact: index its item "
                                                "vectors"),
        vectors: Optional[Path] = typer.Option(None, help="instead of --artifact: a .npy "
                                               "[n, dim] matrix"),
        ids: Optional[Path] = typer.Option(None, help="with --vectors: one item id per line"),
        model_name: Optional[str] = typer.Option(None, help="with --vectors: model name for "
                                                 "the metadata"),
        factory: str = FACTORY_OPT,
        metric: str = typer.Option("ip", help="ip (default; the recommender's score), cosine "
                                   "or l2"),
        search_params: str = PARAMS_OPT,
        min_recall: float = typer.Option(0.95, min=0.0, max=1.0, help="an approximate index "
                                         "below this recall@k against exact is not written"),
        k: int = typer.Option(10, min=1, help="k of the recall check"),
        queries: int = typer.Option(1000, min=1, help="item queries in the recall check"),
        force: bool = typer.Option(False, help="write even below --min-recall"),
        threads: int = typer.Option(1, min=1)):
    """Build an index from an artifact's item vectors (or a .npy matrix) and save it."""
    from rankpref.serving.index import ItemIndex

    _threads(threads)
    if (artifact is None) == (vectors is None):
        raise RankprefError("give exactly one of --artifact or --vectors (with --ids)")
    if artifact is not None:
        from rankpref.tasks.next_item import Recommender

        rec = Recommender.load(artifact, command="rankpref index")
        index = ItemIndex.from_recommender(rec, factory=factory, metric=metric,
                                           search_params=search_params,
                                           metadata={"artifact": str(artifact)})
    else:
        if ids is None:
            raise RankprefError("--vectors needs --ids (one item id per line)")
        matrix = _read_vectors(vectors)
        meta = {"model": model_name or vectors.stem, "source": str(vectors)}
        index = ItemIndex.build(_read_ids(ids), matrix, factory=factory, metric=metric,
                                metadata=meta, search_params=search_params)
    report = None
    if not index.exact:
        report = _recall_report(index, queries, k, seed=0)
        typer.echo(f"recall@{k} against exact search: {report['recall']:.4f} "
                   f"({report['queries']} item queries)")
        if report["recall"] < min_recall and not force:
            raise RankprefError(f"recall@{k} {report['recall']:.4f} is below --min-recall "
                                f"{min_recall}; not written (raise nprobe/efSearch, choose "
                                "another factory, or pass --force)")
    index.save(out)
    typer.echo(json.dumps({"index": str(out), **index.describe(),
                           **({"recall": report["recall"]} if report else {})}, indent=2))


@index_app.command("search")
@friendly
def index_search(
        index_dir: Path = typer.Option(..., "--index", help="index folder"),
        item: Optional[str] = typer.Option(None, help="nearest items to this item (itself "
                                           "excluded)"),
        history: Optional[str] = typer.Option(None, help="comma-separated item ids, oldest "
                                              "first: recommend with --artifact's user vector"),
        artifact: Optional[Path] = typer.Option(None, help="the model for --history"),
        k: int = typer.Option(10, min=1, max=10_000),
        include_seen: bool = typer.Option(False, help="allow the history's own items"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
        threads: int = typer.Option(1, min=1)):
    """Nearest items to an item, or recommendations after a history."""
    from rankpref.serving.index import ItemIndex

    _threads(threads)
    if (item is None) == (history is None):
        raise RankprefError("give exactly one of --item or --history")
    index = ItemIndex.load(index_dir)
    if item is not None:
        ids, scores = index.search(index.vector(item)[None, :], k, exclude=[[item]])
    else:
        if artifact is None:
            raise RankprefError("--history needs --artifact (the model that makes user vectors)")
        from rankpref.tasks.next_item import Recommender

        rec = Recommender.load(artifact, command="rankpref index")
        seen = [i.strip() for i in history.split(",") if i.strip()]
        if not seen:
            raise RankprefError("--history is empty: give at least one item id")
        user = rec.user_vectors([rec.item_indices(seen)])
        ids, scores = index.search(user, k, exclude=None if include_seen else [seen])
    rows = [{"rank": r + 1, "item_id": i, "score": round(float(s), 4)}
            for r, (i, s) in enumerate(zip(ids[0], scores[0]))]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['rank']:>3}. {row['item_id']:<14} {row['score']:>10.4f}")


@index_app.command("check")
@friendly
def index_check(
        index_dir: Path = typer.Option(..., "--index", help="index folder"),
        k: int = typer.Option(10, min=1),
        queries: int = typer.Option(1000, min=1, help="item vectors sampled as queries"),
        seed: int = typer.Option(0),
        search_params: str = typer.Option("", "--search-params", help="override the saved "
                                          "search-time parameters"),
        min_recall: float = typer.Option(0.95, min=0.0, max=1.0),
        threads: int = typer.Option(1, min=1)):
    """Recall@k of the index against exact search on its own vectors (exit 1 below
    --min-recall)."""
    from rankpref.serving.index import ItemIndex

    _threads(threads)
    index = ItemIndex.load(index_dir)
    if search_params:
        index.set_search_params(search_params)
    report = _recall_report(index, queries, k, seed)
    report["min_recall_required"] = min_recall
    report["passed"] = report["recall"] >= min_recall
    typer.echo(json.dumps(report, indent=2))
    if not report["passed"]:
        raise typer.Exit(1)


@friendly
def serve(artifact: Path = typer.Option(..., help="trained artifact (or run) folder"),
          index: Optional[Path] = typer.Option(None, help="a saved index folder (default: an "
                                               "exact index built from the artifact at start)"),
          host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
          port: int = typer.Option(8000, min=0, max=65535),
          max_k: int = typer.Option(100, min=1, help="largest k a request may ask for"),
          max_history: int = typer.Option(200, min=1, help="longest history a request may send"),
          max_body_bytes: int = typer.Option(65536, min=256, help="largest request body"),
          threads: int = typer.Option(1, min=1, help="torch and FAISS threads"),
          log_level: str = typer.Option("warning", help="uvicorn log level")):
    """Serve nearest-item lookups and recommendations over HTTP (docs at /docs)."""
    from rankpref.serving.server import Limits, run_server

    limits = Limits(max_k=max_k, max_history=max_history, max_body_bytes=max_body_bytes)
    run_server(artifact, index_dir=index, host=host, port=port, limits=limits, threads=threads,
               log_level=log_level)
