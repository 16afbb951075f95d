"""The data of ranking runs: a rated pool (:mod:`rankpref.data.rated`), standardised features,
and the data module that samples fresh training lists every epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rankpref.data import rated
from rankpref.data.module import DataModule
from rankpref.errors import DataError
from rankpref.tasks.rank.config import RankConfig, RankDataConfig
from rankpref.text import TextEncoder

LABEL_PAD = float("-inf")
"""Padding label of training/evaluation lists (never a real rating)."""


def make_encoder(cfg: RankDataConfig, progress: bool = False) -> TextEncoder:
    return TextEncoder(cfg.text_model, cache_dir=Path(cfg.cache_dir) / "embeddings",
                       progress=progress)


def takes_tokens(cfg: RankConfig) -> bool:
    """Whether the config's scorer reads token ids (and fine-tunes its encoder)."""
    from rankpref.registry import MODELS

    return bool(getattr(MODELS.entry(cfg.model.name, "rank").obj, "takes_tokens", False))


class TokenEncoder:
    """Texts -> ``[n, max_tokens]`` token ids of the scorer's own tokenizer (0-padded), for
    scorers that fine-tune their encoder."""

    def __init__(self, model: str | None, max_tokens: int):
        from rankpref.models.text_scorer import encoder_folder

        self.source = encoder_folder(model)
        self.max_tokens = max_tokens
        self.model_id = f"{Path(self.source).name}-tokens{max_tokens}"
        self._tokenizer = None

    def encode(self, texts, what: str = "texts") -> np.ndarray:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.source)
        out = self._tokenizer(list(texts), max_length=self.max_tokens, padding="max_length",
                              truncation=True, return_tensors="np")
        return out["input_ids"].astype(np.int64)


def text_encoder(cfg: RankConfig):
    """What turns the text column into features: token ids for a fine-tuning scorer, else
    None (the cached sentence embeddings of ``data.text_model``)."""
    if takes_tokens(cfg):
        return TokenEncoder(cfg.model.params().get("text_model") or cfg.data.text_model,
                            cfg.data.max_tokens)
    return None


def make_media(cfg: RankDataConfig, progress: bool = True):
    """The cached feature extractor of the config's audio or image column."""
    from rankpref.data.clips import MediaFeatures

    if cfg.image_column:
        return MediaFeatures(cfg.image_model, kind="image",
                             cache_dir=Path(cfg.cache_dir) / "media", progress=progress)
    return MediaFeatures(cfg.audio_features, kind="audio", cache_dir=Path(cfg.cache_dir) /
                         "media", min_seconds=cfg.min_clip_seconds, progress=progress)


def source_spec(cfg: RankDataConfig) -> rated.SourceSpec:
    return rated.resolve_source(cfg.name, target=cfg.target, text_column=cfg.text_column,
                                feature_columns=cfg.feature_columns,
                                split_column=cfg.split_column, id_column=cfg.id_column,
                                audio_column=cfg.audio_column, image_column=cfg.image_column)


def load_data(cfg: RankDataConfig, encoder=None, media=None) -> rated.RatedPool:
    spec = source_spec(cfg)
    if spec.text_column and cfg.embeddings is None and encoder is None:
        encoder = make_encoder(cfg)
    if spec.media_column and cfg.embeddings is None and media is None:
        media = make_media(cfg)
    pool = rated.load_pool(spec, embeddings=cfg.embeddings, encoder=encoder, media=media,
                           allow_outside=cfg.allow_outside_paths,
                           rater_column=cfg.rater_column, std_column=cfg.std_column,
                           split_seed=cfg.split_seed,
                           fractions=(cfg.valid_fraction, cfg.test_fraction))
    for name in rated.SPLITS:
        count = int((pool.split == name).sum())
        if count < 2:
            raise DataError(f"split '{name}' has {count} item(s); need at least 2",
                            path=spec.path)
    if np.ptp(pool.part("train").labels) == 0:
        raise DataError("all train labels are equal: nothing to rank", path=spec.path,
                        field=spec.target)
    return pool


class ListDataModule(DataModule):
    """Training: fresh lists of ``lists.list_size`` items every epoch (seeded by seed and
    epoch, within one rater when raters are known). Validation: the whole valid split as one
    batch (Kendall tau is over the split, not per list)."""

    def __init__(self, cfg: RankConfig, x: dict[str, np.ndarray], pool: rated.RatedPool):
        self.cfg = cfg
        self.x = x
        self.parts = {name: pool.part(name) for name in rated.SPLITS}
        batch = cfg.train.batch_size
        if not cfg.lists.lists_per_epoch:
            batch = max(1, min(batch, self._one_pass()))
        super().__init__(batch, seed=cfg.train.seed, num_workers=cfg.train.num_workers)
        self.stats: list[dict] = []

    def lists_per_epoch(self) -> int:
        """About one pass over the train items, and at least ``lists.min_steps`` steps: a
        pool too small to fill ``min_steps`` batches gets batches of one pass each
        (:meth:`train_batch_size`), so an epoch stays a few passes, not a hundred."""
        lists = self.cfg.lists
        if lists.lists_per_epoch:
            return lists.lists_per_epoch
        return max(self._one_pass(), lists.min_steps * self.batch_size)

    def _one_pass(self) -> int:
        return -(-len(self.parts["train"]) // self.cfg.lists.list_size)

    def train_dataset(self) -> TensorDataset:
        cfg, train = self.cfg, self.parts["train"]
        num_lists = self.lists_per_epoch()
        lists, stats = rated.sample_lists(
            train.labels, cfg.lists.list_size, margin=cfg.lists.margin, num_lists=num_lists, seed=cfg.train.seed * 100003 + self.epoch(),
            groups=train.raters if cfg.lists.per_rater else None)
        if stats.lists == 0:
            raise DataError(f"no usable training list (margin {cfg.lists.margin:g}, "
                            f"list size {cfg.lists.list_size}): {stats.as_dict()}")
        self.stats.append(stats.as_dict())
        bx, by = rated.gather_lists(self.x["train"], train.labels, lists, LABEL_PAD)
        return TensorDataset(torch.from_numpy(bx), torch.from_numpy(by.astype(np.float32)))

    def eval_dataset(self, split: str) -> TensorDataset:
        return TensorDataset(torch.as_tensor(self.x[split], dtype=torch.float32),
                             torch.as_tensor(self.parts[split].labels, dtype=torch.float64))

    def eval_dataloader(self, split: str):
        dataset = self.eval_dataset(split)
        return self.loader(dataset, train=False, batch_size=max(1, len(dataset)))
