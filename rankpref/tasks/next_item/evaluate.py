"""Next-item evaluation: full ranking over the whole catalogue, computed batch by batch.

Each batch's metric *sums* are accumulated and divided once at the end, so the result does
not depend on the batch size. ``mask_history=True`` removes the items of a user's own history
from the ranking (the usual protocol for Amazon data); ``False`` ranks them too (RecBole's
behaviour, for comparison). The padding index 0 is never ranked. A sampled protocol
(``sampled_<N>``: the target against N items the user never interacted with, uniformly
sampled with a fixed seed) exists only when asked for by that name.

Memory is bounded by the catalogue, not the batch: a batch is scored ``score_rows`` users at a
time, so at most ``SCORE_BUDGET`` scores (256 MiB of float32, whatever the catalogue size)
are held at once; the results do not depend on it.
"""

from __future__ import annotations

import numpy as np
import torch

from rankpref.config import apply_overrides
from rankpref.errors import ConfigError, RankprefError
from rankpref.metrics.ranking import MetricAccumulator, batch_ranks
from rankpref.settings import set_threads
from rankpref.tasks.next_item.config import NextItemConfig, parse_protocol
from rankpref.tasks.next_item.data import (SequenceDataModule, eval_datamodule, eval_loader,
                                          row_chunks, score_rows)
from rankpref.tasks.next_item.recommend import Recommender


@torch.no_grad()
def evaluate(score_fn, loader, *, ks: list[int], mask_history: bool = True,
             protocol: str = "full", seed: int = 0, progress: bool = False,
             num_items: int | None = None) -> dict:
    """Run ``score_fn(batch) -> [batch, num_items + 1]`` over ``loader`` and return metrics.

    With ``num_items``, each batch is scored :func:`score_rows` users at a time."""
    sampled = parse_protocol(protocol)
    generator = torch.Generator().manual_seed(seed)
    acc = MetricAccumulator(list(ks))
    iterator = loader
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(loader, desc="evaluate", leave=False)
    rows = score_rows(num_items) if num_items else None
    for batch in iterator:
        for part in row_chunks(batch, rows) if rows else [batch]:
            scores = score_fn(part)
            try:
                ranks = batch_ranks(scores, part["history"], part["targets"],
                                    mask_history=mask_history, sampled=sampled,
                                    generator=generator)
            except ValueError as exc:  # too few unseen items to sample
                raise ConfigError(f"eval.protocol={protocol}: {exc}") from None
            del scores
            acc.add(ranks)
    out = acc.result()
    out["examples"] = acc.count
    return out


def evaluate_model(model, datamodule: SequenceDataModule, cfg: NextItemConfig, split: str,
                   progress: bool = False) -> dict:
    """Full-ranking metrics of ``model`` on ``split`` (valid or test) of ``datamodule``."""
    model.eval()
    return evaluate(lambda b: model.score_all(b["inputs"]), datamodule.eval_dataloader(split),
                    ks=cfg.eval.ks, mask_history=cfg.eval.mask_history,
                    protocol=cfg.eval.protocol, seed=cfg.eval.seed, progress=progress,
                    num_items=datamodule.num_items)


def cold_start_metrics(model, dm: SequenceDataModule, cfg: NextItemConfig, cold: np.ndarray,
                       total: dict | None = None) -> dict:
    """Test metrics broken down by the target: ``cold`` (a held-out item; also under
    ``test``, its older name), ``warm`` (an item seen in training) and ``total`` (every
    event: the run's test metrics, passed as ``total`` when already computed)."""
    test = dm.split.test
    is_cold = np.isin(test.targets, cold)
    out = {"items_held_out": len(cold), "test_events": int(is_cold.sum()),
           "warm_test_events": int((~is_cold).sum())}
    model.eval()
    for name, rows in (("cold", np.flatnonzero(is_cold)), ("warm", np.flatnonzero(~is_cold))):
        if len(rows):
            out[name] = evaluate(lambda b: model.score_all(b["inputs"]),
                                 eval_loader(test.subset(rows), cfg), ks=cfg.eval.ks,
                                 mask_history=cfg.eval.mask_history,
                                 protocol=cfg.eval.protocol, seed=cfg.eval.seed,
                                 num_items=dm.num_items)
    if "cold" in out:
        out["test"] = out["cold"]
    out["total"] = total if total is not None else evaluate_model(model, dm, cfg, "test")
    return out


def evaluate_artifact(path, splits=("test",), *, protocol: str | None = None,
                      mask_history: bool | None = None, overrides: list[str] = (),
                      progress: bool = False) -> dict:
    """Re-read an artifact's data and rank the whole catalogue for each split; ``protocol``,
    ``mask_history`` and ``overrides`` change how (``eval.*`` settings)."""
    rec = Recommender.load(path, command="rankpref evaluate")
    cfg = rec.cfg
    updates = list(overrides)
    if protocol is not None:
        updates.insert(0, f"eval.protocol={protocol}")
    if mask_history is not None:
        updates.insert(0, f"eval.mask_history={str(mask_history).lower()}")
    if updates:
        cfg = apply_overrides(cfg, updates)
    set_threads(cfg.train.threads)
    dm = eval_datamodule(cfg, rec.vocab)
    result = {"dataset": rec.metrics.get("dataset"), "model": cfg.model.name,
              "loss": cfg.loss.name, "split": cfg.data.split, "protocol": cfg.eval.protocol,
              "mask_history": cfg.eval.mask_history, "ks": cfg.eval.ks}
    for name in splits:
        if name not in ("valid", "test"):
            raise RankprefError(f"split must be valid or test, got {name!r}")
        result[name] = evaluate_model(rec.model, dm, cfg, name, progress=progress)
    return result
