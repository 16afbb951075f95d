"""The Lightning data module every task's data module extends.

A task says *what* its examples are (:meth:`DataModule.train_dataset`,
:meth:`DataModule.eval_dataset`, the collate functions); this base owns *how* they are loaded:
batch sizes, workers, a generator seeded by (seed, epoch) so every epoch's order is
reproducible and a resumed run sees the same batches, and the process rank and world size
under DDP.
"""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

SPLITS = ("train", "valid", "test")


class DataModule(L.LightningDataModule):
    collate_train: Callable | None = None
    collate_eval: Callable | None = None

    def __init__(self, batch_size: int, eval_batch_size: int | None = None,
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed

    # ------------------------------------------------------------ what subclasses give

    def train_dataset(self) -> Dataset:
        raise NotImplementedError

    def eval_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    # ------------------------------------------------------------ shared loading

    def world(self) -> tuple[int, int]:
        """(global rank, world size) of this process; (0, 1) outside a trainer."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def epoch(self) -> int:
        """The epoch about to run. The fit loop's count of epochs started, not
        ``current_epoch``: right after a resume from an end-of-epoch checkpoint the latter
        still names the epoch that was saved, while the loaders are built for the next."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        loop = getattr(trainer, "fit_loop", None)
        if loop is not None and trainer.training:
            return loop.epoch_progress.current.processed
        return trainer.current_epoch

    def generator(self, salt: int = 0) -> torch.Generator:
        """A generator seeded by (seed, epoch, salt): the same stream for a given epoch."""
        return torch.Generator().manual_seed(self.seed * 7919 + self.epoch() + 1_000_003 * salt)

    def loader(self, dataset: Dataset, *, train: bool, batch_size: int | None = None,
               **options) -> DataLoader:
        collate = self.collate_train if train else self.collate_eval
        if "batch_sampler" in options:
            options.setdefault("generator", self.generator(salt=2))
        else:
            options.setdefault("batch_size", batch_size or (self.batch_size if train else
                                                            self.eval_batch_size))
            options.setdefault("shuffle", train)
            # a loader draws its base seed from its generator, or else from torch's global one:
            # give every loader its own, so validating never moves training's random stream
            options.setdefault("generator", self.generator(salt=0 if train else 1))
        return DataLoader(dataset, collate_fn=collate, num_workers=self.num_workers, **options)

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_dataset(), train=True)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Every example of ``split`` in this process (final evaluation, no sharding)."""
        if split not in SPLITS[1:]:
            raise ValueError(f"split must be valid or test, got {split!r}")
        return self.loader(self.eval_dataset(split), train=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("valid")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")
