"""Training and evaluation of the thought space (:mod:`rankpref.models.thought_space`).

Pairs are (behaviour text, rationale text) of the training users that have a rationale. A
seeded 10% of them is held out: each held-out behaviour must retrieve its own rationale among
all held-out rationales (recall@1/@10, MRR), compared with the raw backbone's cosine (no
heads). Weights are selected on that held-out MRR.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from rankpref.data.datasets import PreparedDataset
from rankpref.data.splits import Split
from rankpref.errors import RankprefError
from rankpref.losses.contrastive import info_nce
from rankpref.models.thought_space import ThoughtSpace, ThoughtSpaceConfig, save_thought_space
from rankpref.rationales.generate import ItemInfo

MAX_HISTORY = 20


def behaviour_text(history_titles: list[str], chosen_title: str) -> str:
    """The behaviour tower's input, as in the authors' code."""
    shown = "; ".join(history_titles[-MAX_HISTORY:])
    return f"[CONTEXT] History: {shown} [CHOSEN_ITEM] {chosen_title}"


def user_behaviour_texts(dataset: PreparedDataset, split: Split) -> dict[str, str]:
    """user id -> behaviour text (history before, and, the last training item)."""
    info = ItemInfo(dataset)
    out = {}
    for user, seq in zip(split.train_users, split.train_sequences):
        if len(seq) >= 2:
            out[dataset.vocab.users[int(user)]] = behaviour_text(
                [info.title[int(i)] for i in seq[:-1]], info.title[int(seq[-1])])
    return out


@dataclass
class Pairs:
    users: list[str]
    behaviours: list[str]
    rationales: list[str]


def thought_pairs(dataset: PreparedDataset, split: Split, table) -> Pairs:
    """(behaviour, rationale) of each user in a rationale table (user_id, rationale)."""
    behaviours = user_behaviour_texts(dataset, split)
    users, b, r = [], [], []
    for user, text in zip(table["user_id"].to_list(), table["rationale"].to_list()):
        if user in behaviours and text:
            users.append(user)
            b.append(behaviours[user])
            r.append(text)
    if len(users) < 20:
        raise RankprefError(f"only {len(users)} users have both a behaviour and a rationale; "
                            "a thought space needs at least 20")
    return Pairs(users, b, r)


def retrieval_metrics(behaviour: torch.Tensor, rationale: torch.Tensor) -> dict:
    """Each row of ``behaviour`` must find its own row of ``rationale`` (unit vectors)."""
    sims = behaviour @ rationale.T
    own = sims.diagonal().unsqueeze(1)
    ranks = (sims > own).sum(1)  # ties in favour of the target
    return {"recall@1": float((ranks < 1).float().mean()),
            "recall@10": float((ranks < 10).float().mean()),
            "mrr": float((1.0 / (ranks + 1).float()).mean()), "candidates": int(len(sims))}


class ThoughtSpaceModule(L.LightningModule):
    """InfoNCE between the towers. Frozen backbone: batches hold backbone embeddings, with
    in-batch and ``negatives`` sampled rationale negatives from ``bank``. Fine-tuned backbone:
    batches hold pair indices, texts are embedded by ``backbone`` in the step (in-batch
    negatives only, each sampled negative would cost a backbone pass)."""

    def __init__(self, space: ThoughtSpace, bank: torch.Tensor | None, lr: float = 1e-3,
                 weight_decay: float = 0.01, backbone=None, pairs: Pairs | None = None):
        super().__init__()
        self.space = space
        self.backbone = backbone
        self.pairs = pairs
        self.register_buffer("bank", bank, persistent=False)
        self.lr, self.weight_decay = lr, weight_decay
        self.best = (-1.0, None, -1)
        self.history: list[dict] = []

    def _embed(self, texts: list[str]) -> torch.Tensor:
        features = self.backbone.tokenize(texts)
        features = {k: v.to(self.device) for k, v in features.items() if torch.is_tensor(v)}
        return torch.nn.functional.normalize(self.backbone(features)["sentence_embedding"], dim=-1)

    def _views(self, batch):
        if self.backbone is None:
            return batch[0], batch[1]
        idx = batch[0].tolist()
        return (self._embed([self.pairs.behaviours[i] for i in idx]),
                self._embed([self.pairs.rationales[i] for i in idx]))

    def training_step(self, batch, batch_idx):
        b_emb, r_emb = self._views(batch)
        rows = batch[-1]
        cfg = self.space.cfg
        negatives = None
        if cfg.negatives > 0 and self.bank is not None:
            picks = torch.randint(0, len(self.bank), (len(rows), cfg.negatives),
                                  device=rows.device)
            picks = torch.where(picks == rows.view(-1, 1), (picks + 1) % len(self.bank), picks)
            negatives = self.space.rationale(self.bank[picks])
        loss = info_nce(self.space.behaviour(b_emb), self.space.rationale(r_emb),
                        temperature=cfg.temperature, key_ids=rows, negatives=negatives)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(rows))
        return loss

    def validation_step(self, batch, batch_idx):
        b_emb, r_emb = self._views(batch)
        metrics = retrieval_metrics(self.space.behaviour(b_emb), self.space.rationale(r_emb))
        for key in ("recall@1", "recall@10", "mrr"):
            self.log(f"valid/{key}", metrics[key], prog_bar=key == "mrr")
        if metrics["mrr"] > self.best[0]:
            state = {"space": copy.deepcopy(self.space.state_dict())}
            if self.backbone is not None:
                state["backbone"] = copy.deepcopy(self.backbone.state_dict())
            self.best = (metrics["mrr"], state, self.current_epoch)
        self.history.append({"epoch": self.current_epoch + 1, **metrics})

    def configure_optimizers(self):
        params = [{"params": self.space.parameters(), "lr": self.lr}]
        if self.backbone is not None:  # a pretrained backbone wants a much smaller step
            params.append({"params": self.backbone.parameters(), "lr": self.lr * 0.02})
        return torch.optim.AdamW(params, weight_decay=self.weight_decay)


def fit_thought_space(pairs: Pairs, cfg: ThoughtSpaceConfig, out: str | Path, *,
                      epochs: int = 30, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                      cache_dir: str | Path = ".cache/rankpref/embeddings",
                      progress: bool = True, extra_metrics: dict | None = None) -> dict:
    """Train on 90% of the pairs, select on the other 10%, save to ``out``; return metrics."""
    from rankpref.text import TextEncoder

    L.seed_everything(seed, verbose=False)
    encoder = TextEncoder(cfg.backbone, cache_dir=cache_dir, progress=progress)
    cfg.input_dim = encoder.dimension
    b_all = torch.from_numpy(encoder.encode(pairs.behaviours))
    r_all = torch.from_numpy(encoder.encode(pairs.rationales))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs.users))
    n_valid = max(10, len(order) // 10)
    valid, train = order[:n_valid], order[n_valid:]
    space = ThoughtSpace(cfg)
    # one bank row per distinct training rationale text: a text is never its own negative
    text_id: dict[str, int] = {}
    ids = torch.tensor([text_id.setdefault(pairs.rationales[i], len(text_id)) for i in train])
    first = {}
    for pos, t in enumerate(ids.tolist()):
        first.setdefault(t, pos)
    bank = r_all[train][torch.tensor([first[t] for t in range(len(text_id))])]
    raw = retrieval_metrics(torch.nn.functional.normalize(b_all[valid], dim=-1),
                            torch.nn.functional.normalize(r_all[valid], dim=-1))
    backbone = None
    if cfg.finetune_backbone:
        backbone = encoder.model
        backbone.train()
        module = ThoughtSpaceModule(space, None, lr=lr, backbone=backbone, pairs=pairs)
        train_set = TensorDataset(torch.from_numpy(train), ids)
        valid_set = TensorDataset(torch.from_numpy(valid), torch.arange(len(valid)))
    else:
        module = ThoughtSpaceModule(space, bank, lr=lr)
        train_set = TensorDataset(b_all[train], r_all[train], ids)
        valid_set = TensorDataset(b_all[valid], r_all[valid])
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=progress,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, DataLoader(train_set, batch_size=batch_size, shuffle=True),
                DataLoader(valid_set, batch_size=len(valid_set)))
    best_mrr, best_state, best_epoch = module.best
    space.load_state_dict(best_state["space"])
    space.eval()
    if backbone is not None:
        backbone.load_state_dict(best_state["backbone"])
        backbone.eval()
        with torch.no_grad():
            b_valid = module._embed([pairs.behaviours[i] for i in valid])
            r_valid = module._embed([pairs.rationales[i] for i in valid])
    else:
        b_valid, r_valid = b_all[valid], r_all[valid]
    with torch.no_grad():
        learned = retrieval_metrics(space.behaviour(b_valid), space.rationale(r_valid))
    metrics = {"pairs": len(order), "train_pairs": len(train), "valid_pairs": len(valid),
               "backbone": encoder.model_id, "finetune_backbone": cfg.finetune_backbone,
               "best_epoch": best_epoch + 1, "epochs": epochs,
               "valid_retrieval": learned, "valid_retrieval_raw_backbone": raw,
               "history": module.history, **(extra_metrics or {})}
    save_thought_space(space, out, metrics, backbone=backbone)
    return metrics
