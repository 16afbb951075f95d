"""The Lightning module of SESA: a ranking loss over the items scored for each training query
plus a concept BCE on the pre-activations, validated by full ranking of the valid queries."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from rankpref.losses.concept import PADDING_VALUE, concept_bce, graded_info_nce
from rankpref.losses.listwise import ranknet_loss
from rankpref.models.sesa import SESA
from rankpref.tasks.sesa.config import METRICS, SESARunConfig
from rankpref.tasks.sesa.data import TaskInputs
from rankpref.tasks.sesa.evaluate import evaluate


class SESAModule(L.LightningModule):
    def __init__(self, model: SESA, inputs: TaskInputs, cfg: SESARunConfig):
        super().__init__()
        self.model = model
        self.inputs = inputs
        self.cfg = cfg
        task = inputs.task
        self.gains = torch.from_numpy(task.relevance_matrix(np.arange(len(task.query_ids))))
        self.self_item = torch.tensor(task.self_item)
        self.gen = torch.Generator().manual_seed(cfg.train.seed)

    def training_step(self, batch, batch_idx):
        (idx,) = batch
        idx = idx.cpu()
        loss_cfg, prep, dev = self.cfg.loss, self.inputs, self.device
        q_logits = self.model.logits(prep.query_inputs[idx].to(dev))
        gains = self.gains[idx]
        if loss_cfg.negatives == "all":
            item_idx = torch.arange(len(prep.task.item_ids))
        else:  # the batch's relevant items are each other's negatives
            item_idx = torch.nonzero(gains.sum(0) > 0).squeeze(1)
        d_logits = self.model.logits(prep.item_inputs[item_idx].to(dev))
        scores = self.model.score(self.model.activate(q_logits), self.model.activate(d_logits))
        labels = gains[:, item_idx].clone()
        own = self.self_item[idx]
        labels[own.view(-1, 1) == item_idx.view(1, -1)] = PADDING_VALUE
        labels = labels.to(dev)
        if loss_cfg.name == "infonce":
            rank = graded_info_nce(scores, labels, temperature=loss_cfg.temperature)
        else:
            n = min(loss_cfg.list_size, labels.shape[1])
            key = labels.cpu() * 4 + torch.rand(labels.shape, generator=self.gen)
            key = key.masked_fill(labels.cpu() == PADDING_VALUE, float("-inf"))
            pick = key.topk(n, dim=1).indices.to(dev)  # every positive first, then random
            rank = ranknet_loss(scores.gather(1, pick) / loss_cfg.temperature,
                                labels.gather(1, pick), padding_value=PADDING_VALUE)
        loss = rank
        if self.model.explicit and loss_cfg.concept_weight > 0:
            cq = concept_bce(q_logits, prep.query_labels[idx].to(dev),
                             prep.query_label_train[idx].to(dev))
            cd = concept_bce(d_logits, prep.item_labels[item_idx].to(dev),
                             prep.item_label_train[item_idx].to(dev))
            loss = loss + loss_cfg.concept_weight * (cq + cd) / 2
            self.log("train/concept", (cq + cd) / 2, on_step=False, on_epoch=True,
                     batch_size=len(idx))
        if self.model.explicit and loss_cfg.l1_weight > 0:
            eq, ed = self.model.activate(q_logits), self.model.activate(d_logits)
            loss = loss + loss_cfg.l1_weight * (eq.sum(1).mean() + ed.sum(1).mean()) / 2
        self.log("train/rank", rank, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(idx))
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(idx))
        return loss

    def validation_step(self, batch, batch_idx):
        result = evaluate(self.model, self.inputs, "valid")
        for name in METRICS:
            self.log(f"valid/{name}", result[name], prog_bar=name == self.cfg.eval.monitor,
                     batch_size=result["queries"])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.cfg.train.lr,
                                 weight_decay=self.cfg.train.weight_decay)
