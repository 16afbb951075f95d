"""Training of next-item recommenders with Lightning: the module, callbacks and ``fit``."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from safetensors.torch import load_file, save_file

from rankpref.config import DataConfig, ModelConfig, PulseSettings, RunConfig
from rankpref.data.datasets import PreparedDataset, prepare
from rankpref.data.sequences import SequenceDataModule
from rankpref.data.splits import (hold_out_items, make_split, sample_items,
                                  subsample_train_users)
from rankpref.errors import ConfigError, RankprefError
from rankpref.evaluation import MetricAccumulator, batch_ranks, evaluate, parse_protocol
from rankpref.io import atomic_path
from rankpref.losses import NEXT_ITEM_LOSSES
from rankpref.losses.contrastive import info_nce
from rankpref.models.pulse import Pulse, PulseConfig
from rankpref.models.sasrec import SASRec, SASRecConfig
from rankpref.settings import set_threads


_NOISE = ("💡 Tip:", "GPU available:", "TPU available:", "HPU available:", "LOCAL_RANK:")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_NOISE)


def quiet_lightning() -> None:
    """Hide Lightning's hardware banner and tips (resume and DDP messages stay visible)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")


def build_model(cfg: ModelConfig, num_items: int, max_len: int, *,
                pulse: PulseSettings | None = None, text_dim: int = 384,
                why_dim: int = 384) -> SASRec:
    """SASRec, or PULSE (``cfg.name == "pulse"``, settings from ``pulse``)."""
    common = dict(num_items=num_items, max_len=max_len, hidden=cfg.hidden, blocks=cfg.blocks,
                  heads=cfg.heads, dropout=cfg.dropout, ffn_multiplier=cfg.ffn_multiplier,
                  norm=cfg.norm, scale_embeddings=cfg.scale_embeddings)
    if cfg.name == "sasrec":
        return SASRec(SASRecConfig(**common))
    if cfg.name == "pulse":
        pulse = pulse or PulseSettings()
        return Pulse(PulseConfig(**common, text_dim=text_dim, why_dim=why_dim,
                                 use_ids=pulse.use_ids, use_text=pulse.use_text,
                                 id_dropout=pulse.id_dropout))
    raise ConfigError(f"model.name: unknown model {cfg.name!r}")


def model_from_state(cfg: RunConfig, num_items: int, state: dict) -> SASRec:
    """Build ``cfg``'s model with the text/why dimensions of saved weights ``state``."""
    dims = {}
    if cfg.model.name == "pulse":
        if "item_text" not in state or "why_head.2.weight" not in state:
            raise RankprefError("the weights are not a PULSE model's (no item_text/why_head)")
        dims = {"text_dim": state["item_text"].shape[1],
                "why_dim": state["why_head.2.weight"].shape[0]}
    return build_model(cfg.model, num_items, cfg.data.max_len, pulse=cfg.pulse, **dims)


def training_split(dataset: PreparedDataset, data: DataConfig):
    """The split a run trains on: the protocol's split, then the cold-start item hold-out and
    the training-user fraction of ``data``. Returns (split, cold item indices)."""
    split = make_split(dataset.interactions, data.split, data.valid_fraction, data.test_fraction)
    cold = np.zeros(0, dtype=np.int64)
    if data.cold_items > 0:
        cold = sample_items(dataset.num_items, data.cold_items, data.cold_seed)
        split = hold_out_items(split, cold)
    split = subsample_train_users(split, data.train_user_fraction, data.train_user_seed)
    return split, cold


class NextItemModule(L.LightningModule):
    """Trains a sequence encoder on every target position at once; validates by full ranking."""

    def __init__(self, model: SASRec, cfg: RunConfig, *, cold_items: torch.Tensor | None = None,
                 rationale_vectors: torch.Tensor | None = None,
                 owner_rationale: torch.Tensor | None = None):
        """``cold_items``: item indices left out of the training softmax. PULSE's why loss
        needs ``rationale_vectors`` [R, d] and ``owner_rationale`` [training users] (row of
        ``rationale_vectors`` for each training user, -1 = none)."""
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.loss_name = cfg.model.loss
        self.num_items = model.cfg.num_items
        self.sampled = parse_protocol(cfg.eval.protocol)
        self._acc: MetricAccumulator | None = None
        exclude = None
        if cold_items is not None and len(cold_items):
            exclude = torch.zeros(self.num_items + 1, dtype=torch.bool)
            exclude[cold_items] = True
        self.register_buffer("exclude", exclude, persistent=False)
        self.register_buffer("rationale_vectors", rationale_vectors, persistent=False)
        self.register_buffer("owner_rationale", owner_rationale, persistent=False)
        self.why_weight = cfg.pulse.why_weight if isinstance(model, Pulse) else 0.0

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

    def training_step(self, batch, batch_idx):
        weights = self.model.item_weights()
        all_states = self.model(batch["inputs"], weights)
        keep = batch["targets"] != 0
        states, targets = all_states[keep], batch["targets"][keep]
        loss_fn = NEXT_ITEM_LOSSES[self.loss_name]
        if self.loss_name == "ce":
            loss = loss_fn(states, weights, targets, exclude=self.exclude)
        else:
            n = 1 if self.loss_name == "bce" else self.cfg.model.num_negatives
            negatives = torch.randint(1, self.num_items + 1, (len(targets), n),
                                      device=targets.device)
            loss = loss_fn(states, weights, targets, negatives)
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
        scores = self.model.score_all(batch["inputs"])
        self._acc.add(batch_ranks(scores, batch["history"], batch["targets"],
                                  mask_history=self.cfg.eval.mask_history, sampled=self.sampled,
                                  generator=self._gen))

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
        return torch.optim.AdamW(self.model.parameters(), lr=self.cfg.train.lr,
                                 weight_decay=self.cfg.train.weight_decay)


class BestWeights(Callback):
    """Keeps the weights of the best validation epoch as safetensors (rank 0 writes)."""

    def __init__(self, path: Path, monitor: str):
        self.path = Path(path)
        self.monitor = monitor
        self.best = float("-inf")
        self.best_epoch = -1

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or float(value) <= self.best:
            return
        self.best, self.best_epoch = float(value), trainer.current_epoch
        if trainer.is_global_zero:
            state = {k: v.detach().cpu().contiguous() for k, v in pl_module.model.state_dict().items()}
            with atomic_path(self.path) as tmp:
                save_file(state, str(tmp))

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class EpochTimer(Callback):
    """Wall-clock seconds of each training epoch (validation excluded)."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self._start)


def _check_resumable(run_dir: Path, cfg: RunConfig) -> None:
    """Refuse to resume a run folder that was started with different data or model settings."""
    saved = run_dir / "run_config.json"
    current = {"data": cfg.data.model_dump(), "model": cfg.model.model_dump(),
               "pulse": cfg.pulse.model_dump()}
    if saved.exists():
        previous = json.loads(saved.read_text("utf-8"))
        if previous != current:
            raise ConfigError(f"{run_dir}: holds a run with other data/model settings (pulse "
                              "included); choose "
                              "another output_dir or set train.resume=false")
    else:
        with atomic_path(saved) as tmp:
            tmp.write_text(json.dumps(current), encoding="utf-8")


def evaluate_model(model: SASRec, datamodule: SequenceDataModule, cfg: RunConfig,
                   split: str, progress: bool = False) -> dict:
    model.eval()
    out = evaluate(lambda b: model.score_all(b["inputs"]), datamodule.eval_dataloader(split),
                   ks=cfg.eval.ks, mask_history=cfg.eval.mask_history,
                   protocol=cfg.eval.protocol, seed=cfg.eval.seed, progress=progress)
    return out


def eval_datamodule(cfg: RunConfig, vocab=None) -> SequenceDataModule:
    """Prepare ``cfg``'s data and split for evaluation. With ``vocab`` (an artifact's), refuse
    data whose item vocabulary differs: the weights would score the wrong items."""
    dataset = prepare(cfg.data, quiet=True)
    if vocab is not None and dataset.vocab.items != vocab.items:
        raise RankprefError("the dataset's item vocabulary differs from the artifact's; it "
                            "was trained on other data")
    split, _ = training_split(dataset, cfg.data)
    return SequenceDataModule(split, dataset.num_items, cfg.data.max_len,
                              eval_batch_size=cfg.train.eval_batch_size)


def cold_start_metrics(model: SASRec, dm: SequenceDataModule, cfg: RunConfig,
                       cold: np.ndarray) -> dict:
    """Test metrics on the events whose target is a cold-start (held-out) item."""
    from rankpref.data.sequences import EvalSet, collate_eval
    from rankpref.data.splits import EvalExamples

    test = dm.split.test
    rows = np.flatnonzero(np.isin(test.targets, cold))
    subset = EvalExamples(test.users[rows], [test.histories[i] for i in rows], test.targets[rows])
    out = {"items_held_out": len(cold), "test_events": len(rows)}
    if len(rows):
        loader = torch.utils.data.DataLoader(EvalSet(subset, cfg.data.max_len),
                                             batch_size=cfg.train.eval_batch_size,
                                             collate_fn=collate_eval)
        model.eval()
        out["test"] = evaluate(lambda b: model.score_all(b["inputs"]), loader, ks=cfg.eval.ks,
                               mask_history=cfg.eval.mask_history, protocol=cfg.eval.protocol,
                               seed=cfg.eval.seed)
    return out


def fit(cfg: RunConfig, dataset: PreparedDataset | None = None,
        callbacks: list | None = None) -> Path | None:
    """Train, keep the best valid epoch, evaluate valid and test, write the artifact.

    ``callbacks``: extra Lightning callbacks (e.g. tuning's pruning callback).

    Returns the artifact folder (``<run_dir>/model``); in a multi-process run only the
    process of global rank 0 evaluates and writes it, the others return None.
    """
    set_threads(cfg.train.threads)
    quiet_lightning()
    if cfg.data.cold_items > 0 and cfg.model.loss != "ce":
        raise ConfigError("data.cold_items needs model.loss=ce (sampled negatives would "
                          "include the held-out items)")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    dataset = dataset or prepare(cfg.data)
    split, cold = training_split(dataset, cfg.data)
    dm = SequenceDataModule(split, dataset.num_items, cfg.data.max_len, cfg.train.batch_size,
                            cfg.train.eval_batch_size, cfg.train.num_workers, cfg.train.seed)
    extras, pulse_info, module_inputs = {}, {}, {}
    if cfg.model.name == "pulse":
        from rankpref.pulse import setup_pulse

        model, module_inputs, extras, pulse_info = setup_pulse(cfg, dataset, split, cold)
    else:
        model = build_model(cfg.model, dataset.num_items, cfg.data.max_len)
    module = NextItemModule(model, cfg, cold_items=torch.as_tensor(cold), **module_inputs)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    resume = cfg.train.resume and last.exists()
    if cfg.train.resume:
        _check_resumable(run_dir, cfg)
    monitor = f"valid/{cfg.eval.monitor}"
    best = BestWeights(run_dir / "best.safetensors", monitor)
    timer = EpochTimer()
    all_callbacks = [EarlyStopping(monitor=monitor, mode="max", patience=cfg.train.patience),
                     ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0), best,
                     timer, *(callbacks or [])]
    t = cfg.train.trainer
    trainer = L.Trainer(max_epochs=cfg.train.epochs, accelerator=t.accelerator, devices=t.devices,
                        strategy=t.strategy, num_nodes=t.num_nodes, precision=t.precision,
                        callbacks=all_callbacks, default_root_dir=run_dir,
                        logger=CSVLogger(run_dir, name="logs"),  # logs/version_N per launch
                        enable_progress_bar=cfg.train.progress, enable_model_summary=False,
                        num_sanity_val_steps=0, use_distributed_sampler=False,
                        log_every_n_steps=50)
    started = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None,
                weights_only=True)
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None
    if (run_dir / "best.safetensors").exists():
        model.load_state_dict(load_file(str(run_dir / "best.safetensors")))
    eval_started = time.perf_counter()
    valid = evaluate_model(model, dm, cfg, "valid")
    test_started = time.perf_counter()
    test = evaluate_model(model, dm, cfg, "test")
    test_seconds = time.perf_counter() - test_started
    metrics = {
        "dataset": dataset.stats.get("dataset"), "model": cfg.model.name, "loss": cfg.model.loss,
        "split": cfg.data.split, "protocol": cfg.eval.protocol,
        "mask_history": cfg.eval.mask_history, "ks": list(cfg.eval.ks),
        "selected_on": f"valid {cfg.eval.monitor}", "best_epoch": best.best_epoch + 1,
        "epochs_run": trainer.current_epoch,
        "seconds_per_epoch": (sum(timer.seconds) / len(timer.seconds)) if timer.seconds else None,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": {"valid": round(test_started - eval_started, 3),
                         "test": round(test_seconds, 3)},
        "threads": cfg.train.threads,
        "valid": valid, "test": test, "data": dataset.stats, "split_stats": split.stats(),
    }
    if len(cold):
        metrics["cold_start"] = cold_start_metrics(model, dm, cfg, cold)
    if pulse_info:
        metrics["pulse"] = pulse_info
    from rankpref.artifacts import save_artifact

    out = save_artifact(run_dir / "model", model.state_dict(), cfg, dataset.vocab, metrics,
                        dataset.items, **extras)
    return out
