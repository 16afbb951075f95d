"""The Lightning module of next-item training: every target position at once, the registered
next-item loss, PULSE's why loss when rationales are given, validation by full ranking."""

from __future__ import annotations

import inspect

import lightning as L
import torch

from rankpref.losses.contrastive import info_nce
from rankpref.metrics.ranking import MetricAccumulator, batch_ranks
from rankpref.registry import LOSSES
from rankpref.tasks.next_item.config import NextItemConfig, parse_protocol
from rankpref.tasks.next_item.data import row_chunks, score_rows


class NextItemModule(L.LightningModule):
    """Trains a sequence encoder ``model`` (any registered next-item model) and validates it
    by ranking the whole catalogue for every valid user."""

    def __init__(self, model: torch.nn.Module, cfg: NextItemConfig, *,
                 cold_items: torch.Tensor | None = None,
                 rationale_vectors: torch.Tensor | None = None,
                 owner_rationale: torch.Tensor | None = None,
                 popularity: torch.Tensor | None = None):
        """``cold_items``: item indices left out of the training softmax. The why loss needs
        ``rationale_vectors`` [R, d] and ``owner_rationale`` [training users] (the row of
        ``rationale_vectors`` for each training user, -1 = none) and a model with a
        ``why_head``. ``popularity`` [num_items + 1]: each item's share of the training
        targets, for a loss that corrects for popularity-biased negatives."""
        super().__init__()
        self.model = model
        self.cfg = cfg
        entry = LOSSES.entry(cfg.loss.name, "next_item")
        self.loss_fn = entry.obj
        self.negatives = entry.negatives
        self.num_items = model.cfg.num_items
        self.in_batch = cfg.loss.in_batch_negatives if entry.meta.get("in_batch") else 0
        wants = {name for name, p in inspect.signature(entry.obj).parameters.items()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY}
        self.loss_options = {key: value for key, value in (
            ("num_items", self.num_items), ("calibration", cfg.loss.calibration))
            if key in wants}
        if "popularity" in wants and popularity is None:
            raise ValueError(f"loss {cfg.loss.name!r} needs the item popularity")
        self.register_buffer("popularity", popularity if "popularity" in wants else None,
                             persistent=False)
        # masked-item training (BERT4Rec) builds its own inputs and targets from each window
        self.masked = callable(getattr(model, "masked_sample", None))
        self.sampled = parse_protocol(cfg.eval.protocol)
        self._acc: MetricAccumulator | None = None
        exclude = None
        if cold_items is not None and len(cold_items):
            exclude = torch.zeros(self.num_items + 1, dtype=torch.bool)
            exclude[cold_items] = True
        self.register_buffer("exclude", exclude, persistent=False)
        self.register_buffer("rationale_vectors", rationale_vectors, persistent=False)
        self.register_buffer("owner_rationale", owner_rationale, persistent=False)
        self.distill = (cfg.pulse.why_objective == "distill" and rationale_vectors is not None
                        and owner_rationale is not None)
        self.why_weight = (cfg.pulse.why_weight if hasattr(model, "why_head")
                           and not self.distill else 0.0)
        if self.distill:  # trained beside the model, only for the first stage
            self.profile_proj = torch.nn.Linear(rationale_vectors.shape[1], model.cfg.hidden)
        # models whose item_weights(rows) gives a subset (the built-ins; an added model may not)
        weights = getattr(model, "item_weights", None)
        self._rows_ok = (callable(weights) and "rows" in inspect.signature(weights).parameters
                         and not self.masked)  # the mask token has no row in a subset

    def _why_loss(self, states: torch.Tensor, owners: torch.Tensor) -> torch.Tensor | None:
        """InfoNCE between the final state of each user's last window and its rationale."""
        mine = owners >= 0
        rows = torch.full_like(owners, -1)
        rows[mine] = self.owner_rationale[owners[mine]]
        sel = rows >= 0
        if int(sel.sum()) < 2:
            return None
        return info_nce(self.model.why_head(states[sel, -1]), self.rationale_vectors[rows[sel]],
                        temperature=self.cfg.pulse.temperature, key_ids=rows[sel])

    def _distill_loss(self, states: torch.Tensor, real: torch.Tensor,
                      owners: torch.Tensor) -> torch.Tensor | None:
        """MSE between the mean-pooled states of each owner's window and the projection of
        that user's rationale vector (profile distillation)."""
        mine = owners >= 0
        rows = torch.full_like(owners, -1)
        rows[mine] = self.owner_rationale[owners[mine]]
        sel = rows >= 0
        if not bool(sel.any()):
            return None
        weights = real[sel].unsqueeze(-1).to(states.dtype)
        pooled = (states[sel] * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        target = self.profile_proj(self.rationale_vectors[rows[sel]])
        if self.cfg.pulse.distill_standardize:
            # The projection is trainable and b = L_rec / L_distill is recomputed every step,
            # so the raw MSE rewards driving it to zero without bound, and the cheapest zero
            # is one pooled state for every user and a projection that ignores the profile
            # (on Beauty the recommendation loss then sat at ln(num_items)). The MSE of
            # batch-standardised columns, 2 - 2 corr, is 0 only for states that follow the
            # profiles and 2 for a constant one.
            if len(pooled) < 2:
                return None
            return 2.0 - 2.0 * _column_correlation(pooled, target).mean()
        return torch.nn.functional.mse_loss(pooled, target)

    def training_step(self, batch, batch_idx):
        inputs, grid = batch["inputs"], batch["targets"]
        if self.masked:
            inputs, grid = self.model.masked_sample(inputs, grid)
        keep = grid != 0
        targets = grid[keep]
        negatives = in_batch = None
        if self.negatives is not None:
            n = 1 if self.negatives == "one" else self.cfg.loss.num_negatives
            negatives = torch.randint(1, self.num_items + 1, (len(targets), n),
                                      device=targets.device)
        if self.in_batch:  # drawn from the step's targets: in proportion to popularity
            in_batch = targets[torch.randint(len(targets), (self.in_batch,),
                                             device=targets.device)]
        popularity = self.popularity
        drawn = (inputs.numel() + len(targets) + (0 if negatives is None else negatives.numel())
                 + (0 if in_batch is None else len(in_batch)))
        if negatives is not None and self._rows_ok and 2 * drawn < self.num_items:
            # a sampled loss sees only the batch's items: compute just their vectors (at 818k
            # items PULSE's text projection of every item made the step 2.1x slower); when the
            # draws cover much of the catalogue (87k items, 256 negatives) the whole table is
            # faster (1.2x), so the subset is used only below half the catalogue
            parts = [inputs.flatten(), targets, negatives.flatten()]
            if in_batch is not None:
                parts.append(in_batch)
            rows, inverse = torch.unique(torch.cat([
                torch.zeros(1, dtype=inputs.dtype, device=inputs.device), *parts]),
                sorted=True, return_inverse=True)
            weights = self.model.item_weights(rows)
            pieces = inverse[1:].split([len(p) for p in parts])  # row 0 (padding) stays 0
            inputs = pieces[0].view_as(inputs)
            targets, negatives = pieces[1], pieces[2].view_as(negatives)
            if in_batch is not None:
                in_batch = pieces[3]
            if popularity is not None:
                popularity = popularity[rows]
        else:
            weights = self.model.item_weights()
        all_states = self.model(inputs, weights)
        states = all_states[keep]
        options = dict(self.loss_options)
        if in_batch is not None:
            options.update(in_batch=in_batch, popularity=popularity)
        loss = self.loss_fn(states, weights, targets, negatives=negatives, exclude=self.exclude,
                            **options)
        if (self.distill and "owners" in batch
                and self.current_epoch < self.cfg.pulse.distill_epochs):
            distill = self._distill_loss(all_states, inputs != 0, batch["owners"])
            if distill is not None:
                self.log("train/distill_loss", distill, on_step=False, on_epoch=True,
                         batch_size=len(targets), sync_dist=True)
                a = self.cfg.pulse.distill_weight
                scale = (loss.detach() / distill.detach().clamp_min(1e-8)
                         if self.cfg.pulse.distill_balance else 1.0)
                loss = (1 - a) * loss + a * scale * distill
        if self.why_weight > 0 and self.rationale_vectors is not None and "owners" in batch:
            why = self._why_loss(all_states, batch["owners"])
            if why is not None:
                self.log("train/why_loss", why, on_step=False, on_epoch=True,
                         batch_size=len(targets), sync_dist=True)
                loss = loss + self.why_weight * why
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(targets), sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._acc = MetricAccumulator(list(self.cfg.eval.ks))
        self._gen = torch.Generator().manual_seed(self.cfg.eval.seed)

    def validation_step(self, batch, batch_idx):
        for part in row_chunks(batch, score_rows(self.num_items)):  # bounded score memory
            scores = self.model.score_all(part["inputs"])
            self._acc.add(batch_ranks(scores, part["history"], part["targets"],
                                      mask_history=self.cfg.eval.mask_history,
                                      sampled=self.sampled, generator=self._gen))
            del scores

    def on_validation_epoch_end(self) -> None:
        totals = self._acc.as_tensor()
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            totals = totals.to(self.device)  # NCCL needs device tensors
            torch.distributed.all_reduce(totals)
            totals = totals.cpu()
        self._acc.load_tensor(totals)
        for name, value in self._acc.result().items():
            self.log(f"valid/{name}", value, prog_bar=name == self.cfg.eval.monitor,
                     sync_dist=True)  # identical on every rank after the all-reduce

    def configure_optimizers(self):
        # the module's own parameters too (profile distillation's projection)
        return torch.optim.AdamW(self.parameters(), lr=self.cfg.train.lr,
                                 weight_decay=self.cfg.train.weight_decay)


def _column_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each column of ``x`` with the same column of ``y`` over the
    batch (``[batch, dim]`` -> ``[dim]``); 0 where a column is constant."""
    x, y = x - x.mean(0), y - y.mean(0)
    return (x * y).sum(0) / (x.norm(dim=0) * y.norm(dim=0)).clamp_min(1e-8)
