"""The ``rankpref`` command line: prepare, fit, evaluate, recommend, rationales."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rankpref.cli_common import friendly as _friendly
from rankpref.errors import RankprefError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rankpref: learn why people prefer things, and rank with it.")

CONFIG_OPT = typer.Option(None, "--config", "-c", help="YAML config (validated; unknown keys "
                          "are errors)")
SET_OPT = typer.Option(None, "--set", help="override a setting: key.path=value (repeatable)")
DATA_OPT = typer.Option(None, "--data", help="dataset name: demo, beauty, ml-100k, sports, toys")


def _config(config: Optional[Path], data: Optional[str], sets: Optional[List[str]],
            extra: Optional[List[str]] = None):
    from rankpref.config import load_config

    overrides = list(extra or [])
    if data is not None:
        overrides.insert(0, f"data.name={data}")
    return load_config(config, overrides + list(sets or []))


def _print_metrics(title: str, metrics: dict) -> None:
    typer.echo(title)
    for key, value in metrics.items():
        if isinstance(value, float):
            typer.echo(f"  {key:<12} {value:.4f}")


@app.command()
@_friendly
def prepare(data: Optional[str] = DATA_OPT, config: Optional[Path] = CONFIG_OPT,
            set_: Optional[List[str]] = SET_OPT,
            force: bool = typer.Option(False, help="rebuild even if cached")):
    """Read a dataset, preprocess it (dedupe, k-core, ids, order) and cache the result."""
    from rankpref.data.datasets import prepare as run_prepare
    from rankpref.data.splits import make_split

    cfg = _config(config, data, set_)
    ds = run_prepare(cfg.data, force=force)
    split = make_split(ds.interactions, cfg.data.split, cfg.data.valid_fraction,
                       cfg.data.test_fraction)
    typer.echo(json.dumps({"prepared": str(ds.path), **ds.stats, "split": split.stats()},
                          indent=2))


@app.command()
@_friendly
def fit(data: Optional[str] = DATA_OPT, config: Optional[Path] = CONFIG_OPT,
        set_: Optional[List[str]] = SET_OPT,
        model: Optional[str] = typer.Option(None, "--model", help="sasrec (default) or pulse"),
        loss: Optional[str] = typer.Option(None, help="ce (default), bce or sampled_softmax"),
        out: Optional[Path] = typer.Option(None, "--out", help="run folder"),
        epochs: Optional[int] = typer.Option(None, help="maximum epochs"),
        plot: bool = typer.Option(False, "--plot", help="also write training curves (loss, "
                                  "valid metrics) to <run>/training_curves.png")):
    """Train a model; keeps the best valid epoch and writes an artifact folder."""
    from rankpref.training import fit as run_fit

    extra = []
    if model is not None:
        extra.append(f"model.name={model}")
    if loss is not None:
        extra.append(f"model.loss={loss}")
    if out is not None:
        extra.append(f"output_dir={out}")
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    cfg = _config(config, data, set_, extra)
    artifact = run_fit(cfg)
    if artifact is not None:
        metrics = json.loads((artifact / "metrics.json").read_text())
        _print_metrics(f"valid ({metrics['protocol']} ranking)", metrics["valid"])
        _print_metrics(f"test ({metrics['protocol']} ranking)", metrics["test"])
        typer.echo(f"artifact: {artifact}")
        if plot:
            from rankpref.plots import plot_training_curves

            curves = plot_training_curves(cfg.run_dir(), monitor=cfg.eval.monitor)
            typer.echo(f"training curves: {curves}")


@app.command()
@_friendly
def evaluate(artifact: List[Path] = typer.Option(..., help="artifact or run folder; repeat "
                                                 "to compare runs"),
             split: str = typer.Option("test", help="valid, test or both"),
             protocol: Optional[str] = typer.Option(None, help="full (default) or sampled_<N>"),
             mask_history: Optional[bool] = typer.Option(
                 None, "--mask-history/--no-mask-history",
                 help="exclude the user's own history from the ranking (off = RecBole's way)"),
             output: Optional[Path] = typer.Option(None, help="also write the metrics JSON here"),
             plot: bool = typer.Option(False, "--plot", help="write a bar chart of the runs' "
                                       "recall@k and ndcg@k"),
             plot_file: Optional[Path] = typer.Option(None, help="where --plot writes (default: "
                                                      "the --output path with .png, else "
                                                      "./evaluation.png)"),
             set_: Optional[List[str]] = SET_OPT):
    """Evaluate artifacts by full ranking on their dataset's valid/test split."""
    from rankpref.io import write_json

    if split not in ("valid", "test", "both"):
        raise RankprefError(f"--split must be valid, test or both, got {split!r}")
    splits = ["valid", "test"] if split == "both" else [split]
    results: dict[str, dict] = {}
    for path in artifact:
        name = _run_name(path, results)
        if len(artifact) > 1:
            typer.echo(f"== {name} ({path})")
        results[name] = _evaluate_one(path, splits, protocol, mask_history, list(set_ or []))
    if output:
        write_json(output, next(iter(results.values())) if len(results) == 1 else
                   {"runs": results})
    if plot:
        from rankpref.plots import plot_metric_bars

        first_name, first = next(iter(results.items()))
        for name, r in results.items():  # one chart compares runs measured the same way
            for key in ("dataset", "split", "protocol", "mask_history"):
                if r[key] != first[key]:
                    raise RankprefError(f"--plot: run {name!r} has {key} {r[key]!r} but "
                                        f"{first_name!r} has {first[key]!r}; plot runs "
                                        "measured the same way (--protocol and "
                                        "--mask-history apply to every run)")
        bars = {name: {f"{s} {m}": v for s in splits for m, v in r[s].items()
                       if m.startswith(("recall@", "ndcg@"))} for name, r in results.items()}
        target = plot_file or (output.with_suffix(".png") if output else Path("evaluation.png"))
        title = (f"{first['dataset']}: {first['protocol']} ranking, mask_history="
                 f"{first['mask_history']}")
        typer.echo(f"plot: {plot_metric_bars(bars, target, title=title)}")


def _run_name(path: Path, taken: dict) -> str:
    """A short, unique label for a run: its run folder's name."""
    path = Path(path)
    name = path.parent.name if path.name == "model" else path.name
    label, n = name or str(path), 2
    while label in taken:
        label, n = f"{name} ({n})", n + 1
    return label


def _evaluate_one(artifact: Path, splits: list[str], protocol: Optional[str],
                  mask_history: Optional[bool], sets: list[str]) -> dict:
    from rankpref.config import apply_overrides
    from rankpref.evaluation import parse_protocol
    from rankpref.recommend import Recommender
    from rankpref.settings import set_threads
    from rankpref.training import eval_datamodule, evaluate_model

    rec = Recommender.load(artifact)
    cfg = rec.cfg
    updates = []
    if protocol is not None:
        updates.append(f"eval.protocol={protocol}")
    if mask_history is not None:
        updates.append(f"eval.mask_history={str(mask_history).lower()}")
    if updates or sets:
        cfg = apply_overrides(cfg, updates + sets)
    parse_protocol(cfg.eval.protocol)
    set_threads(cfg.train.threads)
    dm = eval_datamodule(cfg, rec.vocab)
    result = {"dataset": rec.metrics.get("dataset"), "model": cfg.model.name,
              "loss": cfg.model.loss, "split": cfg.data.split, "protocol": cfg.eval.protocol,
              "mask_history": cfg.eval.mask_history, "ks": cfg.eval.ks}
    for name in splits:
        result[name] = evaluate_model(rec.model, dm, cfg, name, progress=True)
        _print_metrics(f"{name} ({cfg.eval.protocol} ranking, mask_history="
                       f"{cfg.eval.mask_history})", result[name])
    return result


@app.command()
@_friendly
def recommend(artifact: Path = typer.Option(..., help="artifact or run folder"),
              user: Optional[str] = typer.Option(None, help="a known user id"),
              items: Optional[str] = typer.Option(None, help="comma-separated item ids, oldest first"),
              k: int = typer.Option(10, min=1, max=1000),
              include_seen: bool = typer.Option(False, help="allow items already in the history"),
              explain: int = typer.Option(0, min=0, max=20, help="PULSE: show this many "
                                          "nearest training rationales per recommendation"),
              rationale_backend: Optional[str] = typer.Option(
                  None, help="PULSE: also write a fresh rationale for each recommendation "
                  "with this backend (template, transformers, llama-cpp, openai)"),
              rationale_model: Optional[str] = typer.Option(None, help="model for "
                                                            "--rationale-backend"),
              base_url: Optional[str] = typer.Option(None, help="openai backend URL"),
              as_json: bool = typer.Option(False, "--json", help="print JSON")):
    """Top-k next items for a known user or for a given list of item ids."""
    from rankpref.data.datasets import prepare as run_prepare
    from rankpref.recommend import Recommender, user_history

    if (user is None) == (items is None):
        raise RankprefError("give exactly one of --user or --items")
    rec = Recommender.load(artifact)
    if user is not None:
        history = user_history(run_prepare(rec.cfg.data, quiet=True), user)
    else:
        ids = [i.strip() for i in items.split(",") if i.strip()]
        history = rec.item_indices(ids)
    ranked = rec.recommend(history, k=k, exclude_seen=not include_seen)
    rows = rec.describe(ranked)
    if explain:
        for row, (idx, _) in zip(rows, ranked):
            row["because"] = rec.explain(history, idx, explain)
    if rationale_backend:
        from rankpref.rationales.fresh import fresh_rationales

        fresh = fresh_rationales(rec, history, [idx for idx, _ in ranked], rationale_backend,
                                 model=rationale_model, base_url=base_url)
        for row, text in zip(rows, fresh):
            row["rationale"] = text
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        title = f"  {row['title']}" if row["title"] else ""
        typer.echo(f"{row['rank']:>3}. {row['item_id']:<14} {row['score']:>8.3f}{title}")
        if row.get("rationale"):
            typer.echo(f"       why (generated): {row['rationale']}")
        for near in row.get("because", []):
            tag = "same item" if near["same_item"] else "nearest"
            typer.echo(f"       because ({tag}, sim {near['similarity']:.2f}, user "
                       f"{near['user_id']}): {near['rationale'][:160]}")


rationales_app = typer.Typer(no_args_is_help=True,
                             help="SLM-written rationales: why each user chose their last item.")
app.add_typer(rationales_app, name="rationales")
CACHE_OPT = typer.Option(".cache/rankpref/rationales.sqlite", "--cache",
                         help="the rationale store (SQLite, append-only)")


@rationales_app.command("generate")
@_friendly
def rationales_generate(
        data: Optional[str] = DATA_OPT, config: Optional[Path] = CONFIG_OPT,
        set_: Optional[List[str]] = SET_OPT,
        backend: str = typer.Option("transformers", help="template, transformers, llama-cpp "
                                    "or openai"),
        model: Optional[str] = typer.Option(None, help="model folder, .gguf file or hub name "
                                            "(default: bundled SmolLM2-135M-Instruct)"),
        base_url: Optional[str] = typer.Option(None, help="openai backend: server URL"),
        api_key: Optional[str] = typer.Option(None, envvar="RANKPREF_API_KEY",
                                              help="openai backend: API key"),
        limit: Optional[int] = typer.Option(None, min=1, help="at most this many users"),
        sample: Optional[int] = typer.Option(None, min=1, help="a seeded random sample of users"),
        seed: int = typer.Option(0, help="sampling seed (users and generation)"),
        shard: str = typer.Option("0/1", help="K/N: this process takes every N-th user from "
                                  "the K-th (run N processes side by side on one cache)"),
        batch_size: int = typer.Option(8, min=1, help="users per batch"),
        threads: int = typer.Option(1, min=1, help="torch threads (transformers backend)"),
        max_new_tokens: int = typer.Option(150, min=8),
        dtype: str = typer.Option("auto", help="transformers backend: auto (bfloat16 where the "
                                  "CPU supports it), float32 or bfloat16"),
        timeout: float = typer.Option(60.0, help="openai backend: seconds per request"),
        cache: Path = CACHE_OPT,
        progress: bool = typer.Option(True, help="show a progress bar")):
    """Generate (and cache) one rationale per user; resumes where a previous run stopped."""
    from rankpref.data.datasets import prepare as run_prepare
    from rankpref.data.splits import make_split
    from rankpref.rationales.backends import backend_options, make_backend
    from rankpref.rationales.cache import RationaleStore
    from rankpref.rationales.generate import generate_rationales

    try:
        shard_k, shard_n = (int(x) for x in shard.split("/"))
        if not 0 <= shard_k < shard_n:
            raise ValueError
    except ValueError:
        raise RankprefError(f"--shard must be K/N with 0 <= K < N, got {shard!r}") from None
    cfg = _config(config, data, set_)
    engine = make_backend(backend, model, **backend_options(
        backend, max_new_tokens=max_new_tokens, batch_size=batch_size, threads=threads,
        seed=seed, dtype=dtype, base_url=base_url, api_key=api_key, timeout=timeout))
    ds = run_prepare(cfg.data, quiet=True)
    split = make_split(ds.interactions, cfg.data.split, cfg.data.valid_fraction,
                       cfg.data.test_fraction)
    store = RationaleStore(cache)
    name = cfg.data.name or Path(cfg.data.path).stem
    report = generate_rationales(name, ds, split, engine, store, sample=sample, limit=limit,
                                 seed=seed, batch_size=batch_size, progress=progress,
                                 shard=(shard_k, shard_n))
    out = report.as_dict()
    out.update({"dataset": name, "backend": engine.name, "model": engine.model_id,
                "cache": str(cache), "cached_for_dataset": store.count(name)})
    typer.echo(json.dumps(out, indent=2))


@rationales_app.command("thought-space")
@_friendly
def rationales_thought_space(
        data: Optional[str] = DATA_OPT, config: Optional[Path] = CONFIG_OPT,
        set_: Optional[List[str]] = SET_OPT,
        rationales: str = typer.Option("template", help="'template' or a rationale file "
                                       "(.parquet export or .sqlite cache)"),
        rationale_model: Optional[str] = typer.Option(None, help="only rationales by this model"),
        out: Path = typer.Option(..., "--out", help="folder to write the thought space to"),
        dim: int = typer.Option(128, min=2), temperature: float = typer.Option(0.05, min=1e-4),
        negatives: int = typer.Option(10, min=0, help="sampled negatives per pair"),
        epochs: int = typer.Option(30, min=1), batch_size: int = typer.Option(128, min=2),
        lr: float = typer.Option(1e-3), seed: int = typer.Option(0),
        backbone: Optional[str] = typer.Option(None, help="sentence-transformers model "
                                               "(default: bundled all-MiniLM-L6-v2)"),
        finetune_backbone: bool = typer.Option(False, help="also train the backbone")):
    """Train the thought space: behaviour and rationale towers aligned by InfoNCE."""
    from rankpref.data.datasets import prepare as run_prepare
    from rankpref.models.thought_space import ThoughtSpaceConfig
    from rankpref.rationales.signal import rationale_signal
    from rankpref.settings import set_threads
    from rankpref.thought import fit_thought_space, thought_pairs
    from rankpref.training import training_split

    cfg = _config(config, data, set_)
    set_threads(cfg.train.threads)
    ds = run_prepare(cfg.data, quiet=True)
    split, _ = training_split(ds, cfg.data)
    name = cfg.data.name or Path(cfg.data.path).stem
    signal = rationale_signal(rationales, name, ds, split, model=rationale_model)
    pairs = thought_pairs(ds, split, signal.table)
    space_cfg = ThoughtSpaceConfig(dim=dim, temperature=temperature, negatives=negatives,
                                   backbone=backbone, finetune_backbone=finetune_backbone)
    metrics = fit_thought_space(pairs, space_cfg, out, epochs=epochs, batch_size=batch_size,
                                lr=lr, seed=seed, cache_dir=Path(cfg.data.cache_dir) / "embeddings",
                                progress=cfg.train.progress,
                                extra_metrics={"dataset": name, "rationales": signal.counts})
    metrics.pop("history", None)
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"thought space: {out}")


@rationales_app.command("refine")
@_friendly
def rationales_refine(
        data: Optional[str] = DATA_OPT, config: Optional[Path] = CONFIG_OPT,
        set_: Optional[List[str]] = SET_OPT,
        thought_space: Path = typer.Option(..., help="a folder written by `rationales "
                                           "thought-space`"),
        backend: str = typer.Option("transformers", help="transformers, llama-cpp or openai"),
        model: Optional[str] = typer.Option(None, help="SLM (default: bundled SmolLM2)"),
        base_url: Optional[str] = typer.Option(None, help="openai backend: server URL"),
        depth: int = typer.Option(3, min=1), branching: int = typer.Option(3, min=1),
        beam: int = typer.Option(2, min=1),
        users: Optional[Path] = typer.Option(None, help="refine only the users of this "
                                             "rationale file (.parquet)"),
        limit: Optional[int] = typer.Option(None, min=1, help="at most this many users"),
        sample: Optional[int] = typer.Option(None, min=1, help="a seeded random sample"),
        seed: int = typer.Option(0), batch_size: int = typer.Option(8, min=1),
        max_new_tokens: int = typer.Option(60, min=8), threads: int = typer.Option(1, min=1),
        cache: Path = CACHE_OPT, progress: bool = typer.Option(True)):
    """Tree-of-Thought refinement: beam search over thought chains scored in the thought space."""
    import polars as pl

    from rankpref.data.datasets import prepare as run_prepare
    from rankpref.models.thought_space import load_thought_space
    from rankpref.rationales.backends import backend_options, make_backend
    from rankpref.rationales.cache import RationaleStore
    from rankpref.rationales.generate import ItemInfo, select_users, training_examples
    from rankpref.rationales.tot import ToTSettings, refine_into_store
    from rankpref.text import TextEncoder
    from rankpref.thought import user_behaviour_texts
    from rankpref.training import training_split

    cfg = _config(config, data, set_)
    settings = ToTSettings(depth, branching, beam)
    space = load_thought_space(thought_space)
    engine = make_backend(backend, model, **backend_options(
        backend, max_new_tokens=max_new_tokens, batch_size=batch_size, threads=threads,
        seed=seed, base_url=base_url))
    ds = run_prepare(cfg.data, quiet=True)
    split, _ = training_split(ds, cfg.data)
    name = cfg.data.name or Path(cfg.data.path).stem
    examples, _ = training_examples(split, ds.vocab)
    if users is not None:
        wanted = set(pl.read_parquet(users)["user_id"].cast(pl.String).to_list())
        examples = [ex for ex in examples if ex.user_id in wanted]
    examples = select_users(examples, sample=sample, limit=limit, seed=seed)
    encoder = TextEncoder(space.cfg.backbone, cache_dir=Path(cfg.data.cache_dir) / "embeddings",
                          progress=False)
    report = refine_into_store(name, examples, ItemInfo(ds), ds.vocab, engine, space, encoder,
                               user_behaviour_texts(ds, split), settings, RationaleStore(cache),
                               progress=progress)
    report.update({"dataset": name, "model": engine.model_id, "prompt_version": settings.version,
                   "cache": str(cache)})
    typer.echo(json.dumps(report, indent=2))


@rationales_app.command("show")
@_friendly
def rationales_show(data: str = typer.Option(..., help="dataset name"),
                    user: str = typer.Option(..., help="user id"), cache: Path = CACHE_OPT):
    """Print the cached rationales of one user."""
    from rankpref.rationales.cache import RationaleStore

    if not cache.exists():
        raise RankprefError(f"{cache}: no rationale cache yet; run `rankpref rationales generate`")
    rows = RationaleStore(cache).rows(dataset=data, user_id=user)
    if not rows:
        raise RankprefError(f"no rationale for user {user!r} in dataset {data!r} ({cache})")
    for r in rows:
        typer.echo(f"[{r['model']} / {r['prompt_version']}] chose {r['chosen_item']}: "
                   f"{r['rationale']}")


@rationales_app.command("export")
@_friendly
def rationales_export(data: str = typer.Option(..., help="dataset name"),
                      out: Path = typer.Option(..., help="parquet file to write"),
                      cache: Path = CACHE_OPT):
    """Write a dataset's cached rationales to a parquet file (atomically)."""
    from rankpref.io import atomic_path
    from rankpref.rationales.cache import RationaleStore
    from rankpref.rationales.generate import rationale_table

    table = rationale_table(RationaleStore(cache), data)
    with atomic_path(out) as tmp:
        table.write_parquet(tmp)
    typer.echo(f"wrote {table.height} rationales to {out}")


# sub-commands that live in their own modules (each imports its heavy dependencies lazily)
from rankpref.cli_index import index_app, serve  # noqa: E402
from rankpref.cli_rank import rank_app  # noqa: E402
from rankpref.cli_sesa import sesa_app  # noqa: E402
from rankpref.cli_tune import tune  # noqa: E402

app.add_typer(rank_app, name="rank")
app.add_typer(sesa_app, name="sesa")
app.add_typer(index_app, name="index")
app.command("serve")(serve)
app.command("tune")(tune)


def main() -> None:
    app(prog_name="rankpref")


if __name__ == "__main__":
    main()
