"""``rankpref rationales``: generate, refine (Tree-of-Thought), show and export rationales, and
train the thought space that aligns them with behaviour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rankpref.cli.common import CONFIG_OPT, SET_OPT, friendly
from rankpref.cli.next_item import DATA_OPT, config_from
from rankpref.errors import RankprefError

rationales_app = typer.Typer(no_args_is_help=True,
                             help="SLM-written rationales: why each user chose their last item.")
CACHE_OPT = typer.Option(".cache/rankpref/rationales.sqlite", "--cache",
                         help="the rationale store (SQLite, append-only)")


@rationales_app.command("generate")
@friendly
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
    cfg = config_from(config, data, set_)
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
@friendly
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
    """Train the thought space: behaviour and rationale towers aligned by InfoNCE.

    Each epoch is checkpointed in ``<out>.run/``; the same command after a crash or Ctrl-C
    resumes from the last finished epoch."""
    from rankpref.data.datasets import prepare as run_prepare
    from rankpref.models.thought_space import ThoughtSpaceConfig
    from rankpref.rationales.signal import rationale_signal
    from rankpref.settings import set_threads
    from rankpref.tasks.next_item import fit_thought_space, thought_pairs, training_split

    cfg = config_from(config, data, set_)
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
                                progress=cfg.train.progress, trainer=cfg.train.trainer,
                                extra_metrics={"dataset": name, "rationales": signal.counts},
                                run_dir=out.with_name(out.name + ".run"))
    metrics.pop("history", None)
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"thought space: {out}")


@rationales_app.command("refine")
@friendly
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
    from rankpref.rationales.backends import backend_options, make_backend
    from rankpref.rationales.cache import RationaleStore
    from rankpref.rationales.generate import ItemInfo, select_users, training_examples
    from rankpref.rationales.tot import ToTSettings, refine_into_store
    from rankpref.tasks.next_item import (load_thought_space, training_split,
                                          user_behaviour_texts)
    from rankpref.text import TextEncoder

    cfg = config_from(config, data, set_)
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
@friendly
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
@friendly
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
