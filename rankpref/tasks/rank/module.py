"""The Lightning module of listwise ranking: a registered scorer trained with a registered
listwise loss (RankList's curriculum advanced by epoch), validated by Kendall tau over the
whole valid split."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from rankpref.losses.listwise import curriculum_max_skip
from rankpref.metrics.correlation import kendall_tau_b, spearman
from rankpref.registry import LOSSES
from rankpref.tasks.rank.config import RankConfig, RankLossConfig
from rankpref.tasks.rank.data import LABEL_PAD

_CORRELATIONS = {"kendall_tau": kendall_tau_b, "spearman": spearman}


def loss_kwargs(cfg: RankLossConfig, epoch: int, list_size: int) -> dict:
    """Keyword arguments for the named loss at ``epoch`` (RankList's curriculum lives here)."""
    if cfg.name != "ranklist":
        return {}
    return {"pairs": cfg.pairs, "skips": cfg.skips, "margin": cfg.margin, "approx": cfg.approx,
            "normalize": cfg.normalize,
            "max_skip": curriculum_max_skip(epoch, list_size, cfg.curriculum_every,
                                            cfg.curriculum_start)}


POINTWISE = ("mse",)
"""Losses that regress the labels themselves: they see standardised labels (train mean and
std), as one would standardise a regression target; the ranking losses see the labels as they
are."""


class RankModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, cfg: RankConfig,
                 label_stats: tuple[float, float] | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.loss_fn = LOSSES.get(cfg.loss.name, "listwise")
        self.label_stats = label_stats if cfg.loss.name in POINTWISE else None

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.label_stats is not None:
            mean, std = self.label_stats
            y = torch.where(y == LABEL_PAD, y, (y - mean) / std)
        scores = self.model(x)
        loss = self.loss_fn(scores, y, LABEL_PAD,
                            **loss_kwargs(self.cfg.loss, self.current_epoch, x.shape[1]))
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        pred = self.model(x).double().cpu().numpy()
        monitor = self.cfg.eval.monitor
        value = _CORRELATIONS[monitor](pred, y.cpu().numpy())
        # an undefined correlation (constant predictions) is the worst, not a missing value
        self.log(f"valid/{monitor}", -1.0 if np.isnan(value) else float(value), prog_bar=True,
                 batch_size=len(y))

    def configure_optimizers(self):
        train = self.cfg.train
        groups = getattr(self.model, "param_groups", None)  # e.g. a fine-tuned encoder's own lr
        params = groups(train.lr, train.weight_decay) if groups else self.model.parameters()
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
