"""Training and evaluation of the thought space (:mod:`rankpref.models.thought_space`).

Pairs are (behaviour text, rationale text) of the training users that have a rationale. A
seeded 10% of them is held out: each held-out behaviour must retrieve its own rationale among
all held-out rationales (recall@1/@10, MRR), compared with the raw backbone's cosine (no
heads). Weights are selected on that held-out MRR.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from rankpref import artifact
from rankpref.config import TrainerConfig
from rankpref.data.datasets import PreparedDataset
from rankpref.data.splits import Split
from rankpref.errors import RankprefError
from rankpref.lightning import (BEST, CHECKPOINTS, BestKeeper, LastCheckpoint, make_trainer,
                                prepare_run, run_fit)
from rankpref.losses.contrastive import info_nce
from rankpref.models.thought_space import ThoughtSpace, ThoughtSpaceConfig
from rankpref.rationales.generate import ItemInfo
from rankpref.registry import ARTIFACTS
from rankpref.text import TextEncoder

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
        # what selection keeps: the heads, and a fine-tuned backbone with them
        self.model = torch.nn.ModuleDict({"space": space} if backbone is None else
                                         {"space": space, "backbone": backbone})
        self.pairs = pairs
        self.register_buffer("bank", bank, persistent=False)
        self.lr, self.weight_decay = lr, weight_decay

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

    def configure_optimizers(self):
        params = [{"params": self.space.parameters(), "lr": self.lr}]
        if self.backbone is not None:  # a pretrained backbone wants a much smaller step
            params.append({"params": self.backbone.parameters(), "lr": self.lr * 0.02})
        return torch.optim.AdamW(params, weight_decay=self.weight_decay)


def fit_thought_space(pairs: Pairs, cfg: ThoughtSpaceConfig, out: str | Path, *,
                      epochs: int = 30, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                      cache_dir: str | Path = ".cache/rankpref/embeddings",
                      progress: bool = True, extra_metrics: dict | None = None,
                      trainer: TrainerConfig | None = None,
                      run_dir: str | Path | None = None) -> dict:
    """Train on 90% of the pairs, select on the other 10% (valid MRR), save to ``out``; return
    metrics.

    With ``run_dir``, every epoch is checkpointed there (as a next-item run's is), and a rerun
    with the same pairs and settings resumes from the last finished epoch."""
    L.seed_everything(seed, verbose=False)
    encoder = TextEncoder(cfg.backbone, cache_dir=cache_dir, progress=progress)
    cfg.input_dim = encoder.dimension
    b_all = torch.from_numpy(encoder.encode(pairs.behaviours, "behaviours"))
    r_all = torch.from_numpy(encoder.encode(pairs.rationales, "rationales"))
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
    resume_from = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        digest = hashlib.sha256("\0".join(pairs.behaviours + pairs.rationales).encode())
        # epochs is left out: a finished run resumes to train more of them
        resume_from = prepare_run(run_dir, {"thought_space": asdict(cfg),
                                            "batch_size": batch_size, "lr": lr, "seed": seed,
                                            "pairs": digest.hexdigest()}, resume=True)
    # selection only, no early stop
    keeper = BestKeeper("valid/mrr", patience=epochs,
                        path=None if run_dir is None else run_dir / BEST)
    callbacks = [keeper] + ([LastCheckpoint(run_dir / CHECKPOINTS)] if run_dir else [])
    fitter = make_trainer(trainer or TrainerConfig(), max_epochs=epochs, callbacks=callbacks,
                          run_dir=run_dir, progress=progress)
    run_fit(fitter, module,
            train_dataloaders=DataLoader(train_set, batch_size=batch_size, shuffle=True),
            val_dataloaders=DataLoader(valid_set, batch_size=len(valid_set)),
            ckpt_path=str(resume_from) if resume_from else None, weights_only=True)
    keeper.restore(module.model)
    module.model.cpu().eval()
    best_epoch = keeper.best_epoch
    history = [{"epoch": h["epoch"], **{k.split("/", 1)[1]: v for k, v in h.items()
                                        if k.startswith("valid/")}} for h in keeper.history]
    if backbone is not None:
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
               "history": history, **(extra_metrics or {})}
    save_thought_space(space, out, metrics, backbone=backbone)
    return metrics


KIND = "thought_space"
WEIGHTS = "thought_space.safetensors"
CONFIG = "thought_space.json"
BACKBONE = "backbone"


def save_thought_space(space: ThoughtSpace, folder: str | Path, metrics: dict,
                       backbone=None) -> Path:
    """Folder: heads as safetensors, config + metrics as JSON, a fine-tuned backbone as a
    sentence-transformers folder (safetensors). Written atomically."""
    folder = Path(folder)
    with artifact.writer(folder, KIND, "thought_space") as w:
        w.weights(WEIGHTS, space.state_dict(), "the two heads' weights")
        w.json(CONFIG, {"config": asdict(space.cfg), "metrics": metrics},
               "the ThoughtSpaceConfig and training metrics")
        if backbone is not None:
            backbone.save(str(w.path(BACKBONE, "the fine-tuned backbone (sentence-"
                                     "transformers folder, safetensors)")),
                          safe_serialization=True)
    return folder


def load_thought_space(folder: str | Path) -> ThoughtSpace:
    """Load heads (and note a fine-tuned backbone's folder in ``cfg.backbone``)."""
    from safetensors.torch import load_file

    folder, _ = artifact.expect(folder, KIND, "a thought space setting")
    if not (folder / WEIGHTS).exists() or not (folder / CONFIG).exists():
        raise RankprefError(f"{folder}: not a thought space (needs {WEIGHTS} and {CONFIG}); "
                            "train one with `rankpref rationales thought-space`")
    try:
        meta = json.loads((folder / CONFIG).read_text("utf-8"))
        cfg = ThoughtSpaceConfig(**meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RankprefError(f"{folder / CONFIG}: corrupt thought-space config ({exc})") from None
    if (folder / BACKBONE).exists():
        cfg.backbone = str(folder / BACKBONE)
    space = ThoughtSpace(cfg)
    try:
        space.load_state_dict(load_file(str(folder / WEIGHTS)))
    except RuntimeError as exc:
        raise RankprefError(f"{folder / WEIGHTS}: weights do not match the config ({exc})") from None
    space.eval()
    return space


ARTIFACTS.register(KIND, load_thought_space)
