"""Next-item evaluation: full ranking over the whole catalogue, computed batch by batch.

Each batch's metric *sums* are accumulated and divided once at the end, so the result does
not depend on the batch size. ``mask_history=True`` removes the items of a user's own history
from the ranking (the usual protocol for Amazon data); ``False`` ranks them too (RecBole's
behaviour, for comparison). The padding index 0 is never ranked. A sampled protocol
(``sampled_<N>``: the target against N items the user never interacted with, uniformly
sampled with a fixed seed) exists only when asked for by that name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rankpref.errors import ConfigError
from rankpref.metrics import metrics_from_ranks, target_ranks


def parse_protocol(protocol: str) -> int | None:
    """``"full"`` -> None; ``"sampled_100"`` -> 100."""
    if protocol == "full":
        return None
    if protocol.startswith("sampled_"):
        try:
            n = int(protocol.split("_", 1)[1])
        except ValueError:
            n = 0
        if n > 0:
            return n
    raise ConfigError(f"eval.protocol: unknown protocol {protocol!r}; use 'full' or 'sampled_<N>'")


def history_mask(history: torch.Tensor, num_columns: int) -> torch.Tensor:
    """Boolean [batch, num_columns]: True where the item is in the row's history (pad excluded)."""
    mask = torch.zeros(history.shape[0], num_columns, dtype=torch.bool, device=history.device)
    mask.scatter_(1, history, True)
    mask[:, 0] = False
    return mask


def batch_ranks(scores: torch.Tensor, history: torch.Tensor, targets: torch.Tensor, *,
                mask_history: bool = True, sampled: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """0-based ranks of the targets. ``scores`` is [batch, num_items + 1] (column 0 = padding).

    Same result as masking the padding column (and the history) with -inf and calling
    :func:`rankpref.metrics.target_ranks`, but without materialising a masked copy of the
    score matrix: it counts the items scoring at least the target's score once, then takes
    off the padding column, the (de-duplicated) history items and the target itself.
    """
    scores = scores.float()
    rows = torch.arange(len(targets), device=scores.device)
    if sampled is not None:
        seen = history_mask(history, scores.shape[1])
        weights = (~seen).float()
        weights[:, 0] = 0.0
        weights[rows, targets] = 0.0
        available = int(weights.sum(dim=1).min().item())
        if available < sampled:
            raise ConfigError(f"eval.protocol: only {available} unseen items to sample, "
                              f"need {sampled}")
        negatives = torch.multinomial(weights.cpu(), sampled, replacement=False,
                                      generator=generator).to(scores.device)
        candidates = torch.cat([targets.view(-1, 1), negatives], dim=1)
        return target_ranks(scores.gather(1, candidates), torch.zeros_like(targets))
    target = scores.gather(1, targets.view(-1, 1))
    at_least = (scores >= target).sum(dim=1)
    at_least -= (scores[:, :1] >= target).squeeze(1).long()  # the padding column
    if mask_history:
        hist, _ = history.sort(dim=1)
        first = torch.ones_like(hist, dtype=torch.bool)
        first[:, 1:] = hist[:, 1:] != hist[:, :-1]
        counted = first & (hist != 0) & (hist != targets.view(-1, 1))
        at_least -= ((scores.gather(1, hist) >= target) & counted).sum(dim=1)
    ranks = at_least - 1  # the target itself
    worst = torch.full_like(ranks, scores.shape[1] - 1)
    return torch.where(torch.isnan(target.squeeze(1)), worst, ranks)


@dataclass
class MetricAccumulator:
    """Sums of per-example metrics; ``result`` divides once, so batching does not matter."""

    ks: list[int]
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, ranks: torch.Tensor) -> None:
        for name, values in metrics_from_ranks(ranks, self.ks).items():
            self.sums[name] = self.sums.get(name, 0.0) + float(values.sum())
        self.count += int(ranks.numel())

    def names(self) -> list[str]:
        return [f"{m}@{k}" for k in self.ks for m in ("recall", "ndcg", "mrr")]

    def as_tensor(self) -> torch.Tensor:
        """Sums then count, for an all-reduce across processes."""
        return torch.tensor([self.sums.get(n, 0.0) for n in self.names()] + [float(self.count)],
                            dtype=torch.float64)

    def load_tensor(self, values: torch.Tensor) -> None:
        names = self.names()
        self.sums = {n: float(values[i]) for i, n in enumerate(names)}
        self.count = int(values[-1])

    def result(self) -> dict[str, float]:
        if self.count == 0:
            return {n: 0.0 for n in self.names()}
        return {n: self.sums.get(n, 0.0) / self.count for n in self.names()}


@torch.no_grad()
def evaluate(score_fn, loader, *, ks: list[int], mask_history: bool = True,
             protocol: str = "full", seed: int = 0, progress: bool = False) -> dict:
    """Run ``score_fn(batch) -> [batch, num_items + 1]`` over ``loader`` and return metrics."""
    sampled = parse_protocol(protocol)
    generator = torch.Generator().manual_seed(seed)
    acc = MetricAccumulator(list(ks))
    iterator = loader
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(loader, desc="evaluate", leave=False)
    for batch in iterator:
        scores = score_fn(batch)
        acc.add(batch_ranks(scores, batch["history"], batch["targets"],
                            mask_history=mask_history, sampled=sampled, generator=generator))
    out = acc.result()
    out["examples"] = acc.count
    return out
