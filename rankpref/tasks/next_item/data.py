"""The data of next-item runs: the split a run trains on, sequence datasets and the data module.

Two training recipes (``data.train_on``). ``every_position`` (SASRec's): every position of a
sequence at once, under causal attention: a window of inputs ``x_1..x_T`` comes with targets
``x_2..x_{T+1}``; histories longer than ``max_len`` are cut from the end into consecutive
windows, so every training interaction after a user's first is a target exactly once.
``every_prefix`` (RecBole's and BSARec's): each prefix ``x_1..x_t`` (its last ``max_len``
items) is a sample of its own whose only target is ``x_{t+1}``, at the last position; a model
that is not causal (BSARec's Fourier filter mixes the whole window) needs it. ``sliding``
lies between: windows end every ``data.window_stride`` targets and score only their last
``window_stride``, so each target keeps at least ``max_len - window_stride`` items of context
at ``max_len / window_stride`` times the work of ``every_position``. Evaluation feeds the last ``max_len`` items of a history (a prefix of
the user's sequence) and scores the whole catalogue at the final position.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from rankpref.data.datasets import PreparedDataset, prepare
from rankpref.data.module import DataModule
from rankpref.data.splits import (EvalExamples, Split, hold_out_items, make_split, sample_items,
                                  subsample_train_users)
from rankpref.errors import RankprefError
from rankpref.tasks.next_item.config import DataConfig, NextItemConfig


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


def training_windows(seq: np.ndarray, max_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut one training sequence into (inputs, targets) windows of at most ``max_len``.

    Targets are ``seq[1:]``; each appears in exactly one window, windows are cut from the end.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    windows = []
    end = len(seq) - 1  # number of targets
    while end > 0:
        start = max(0, end - max_len)
        windows.append((seq[start:end], seq[start + 1:end + 1]))
        end = start
    windows.reverse()
    return windows


class TrainWindows(Dataset):
    """All training windows. ``owners[i]`` is the position (in ``sequences``) of the user whose
    *last* window ``i`` is, else -1: the final state of such a window predicts that user's last
    training item (the choice a rationale explains, see :mod:`rankpref.rationales.generate`)."""

    def __init__(self, sequences: list[np.ndarray], max_len: int):
        self.windows, owners = [], []
        for pos, seq in enumerate(sequences):
            cut = training_windows(seq, max_len)
            self.windows.extend(cut)
            owners.extend([-1] * (len(cut) - 1) + [pos] * bool(cut))
        self.owners = np.array(owners, dtype=np.int64)
        self.lengths = np.array([len(w[0]) for w in self.windows], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i):
        return (*self.windows[i], int(self.owners[i]))


class TrainPrefixes(Dataset):
    """Training samples that end every ``stride`` targets of a sequence: inputs are the last
    ``max_len`` items before the sample's end, and the sample's loss is on its last
    ``stride`` targets only (the earlier ones belong to the sample before), so every target
    is scored exactly once, after at least ``max_len - stride`` items of context where the
    history has them. ``stride=1`` is every prefix (one target at the last position);
    ``stride=max_len`` cuts the same windows as :class:`TrainWindows`. ``owners`` as
    :class:`TrainWindows`: the user whose last training item the sample predicts, else -1."""

    def __init__(self, sequences: list[np.ndarray], max_len: int, stride: int = 1):
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if not 1 <= stride <= max_len:
            raise ValueError(f"stride must be in 1..max_len ({max_len}), got {stride}")
        self.sequences = sequences
        self.max_len = max_len
        self.stride = stride
        seq_ids, ends, owners = [], [], []
        for pos, seq in enumerate(sequences):
            n = len(seq) - 1  # targets seq[1..n]
            if n < 1:
                continue
            end = np.arange(n, 0, -stride, dtype=np.int64)[::-1]
            seq_ids.append(np.full(len(end), pos, dtype=np.int64))
            ends.append(end)
            owner = np.full(len(end), -1, dtype=np.int64)
            owner[-1] = pos
            owners.append(owner)
        empty = np.zeros(0, dtype=np.int64)
        self.seq_ids = np.concatenate(seq_ids) if seq_ids else empty
        self.ends = np.concatenate(ends) if ends else empty
        self.owners = np.concatenate(owners) if owners else empty
        self.lengths = np.minimum(self.ends, max_len)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i):
        seq, end = self.sequences[int(self.seq_ids[i])], int(self.ends[i])
        start = max(0, end - self.max_len)
        inputs = seq[start:end]
        targets = seq[start + 1:end + 1].copy()
        # the targets up to end - stride are scored by the sample ending there
        first = end - self.stride - start  # positions before this one are not this sample's
        if first > 0:
            targets[:first] = 0
        return inputs, targets, int(self.owners[i])


def training_samples(sequences: list[np.ndarray], max_len: int, train_on: str = "every_position",
                     stride: int = 10):
    """The training set of a recipe (``data.train_on``; ``stride``: ``data.window_stride``,
    used by ``sliding``)."""
    if train_on == "every_prefix":
        return TrainPrefixes(sequences, max_len)
    if train_on == "sliding":
        return TrainPrefixes(sequences, max_len, min(stride, max_len))
    if train_on == "every_position":
        return TrainWindows(sequences, max_len)
    raise ValueError(f"train_on must be every_position, every_prefix or sliding, got "
                     f"{train_on!r}")


def _left_pad(arrays: list[np.ndarray], length: int) -> torch.Tensor:
    out = np.zeros((len(arrays), length), dtype=np.int64)
    for row, arr in enumerate(arrays):
        if len(arr):
            out[row, length - len(arr):] = arr
    return torch.from_numpy(out)


def collate_train(batch) -> dict[str, torch.Tensor]:
    """``(inputs, targets[, owner])`` windows -> left-padded tensors (and owners, -1 = none)."""
    length = max(len(b[0]) for b in batch)
    out = {"inputs": _left_pad([b[0] for b in batch], length),
           "targets": _left_pad([b[1] for b in batch], length)}
    if len(batch[0]) > 2:
        out["owners"] = torch.tensor([b[2] for b in batch], dtype=torch.int64)
    return out


class BucketBatchSampler(Sampler):
    """Batches of similar-length windows, so little compute is spent on padding.

    Each epoch: shuffle all windows, cut them into pools of ``pool_batches`` batches, sort each
    pool by length, cut it into batches and shuffle the batch order. With ``world > 1`` each
    process takes every ``world``-th batch (all processes get the same number of batches).
    Deterministic for a given seed and epoch (set by :meth:`set_epoch`).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int = 0, rank: int = 0,
                 world: int = 1, pool_batches: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.pool = batch_size * pool_batches
        self.epoch = 0
        # Lightning sets the epoch of ``loader.batch_sampler.sampler`` before every epoch (with
        # the fit loop's own count, right after a resume too): be that sampler
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.pool):
            pool = order[start:start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches.extend(pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size))
        rng.shuffle(batches)
        usable = len(batches) // self.world * self.world if self.world > 1 else len(batches)
        return batches[self.rank:usable:self.world]

    def __iter__(self):
        # the epoch comes from the trainer (or set_epoch), never from counting iterations: a
        # resumed run must get the same batches as a run that was never stopped
        return (b.tolist() for b in self._batches())

    def __len__(self) -> int:
        n = -(-len(self.lengths) // self.batch_size)
        return n // self.world if self.world > 1 else n


class EvalSet(Dataset):
    """Evaluation examples, served shortest history first (metrics do not depend on order)."""

    def __init__(self, examples: EvalExamples, max_len: int):
        self.examples = examples
        self.max_len = max_len
        lengths = np.array([min(len(h), max_len) for h in examples.histories], dtype=np.int64)
        self.order = np.argsort(lengths, kind="stable")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):
        i = int(self.order[i])
        hist = self.examples.histories[i]
        return (int(self.examples.users[i]), hist[-self.max_len:], hist,
                int(self.examples.targets[i]))


def collate_eval(batch) -> dict[str, torch.Tensor]:
    length = max(1, max(len(b[1]) for b in batch))
    full = max(1, max(len(b[2]) for b in batch))
    return {
        "users": torch.tensor([b[0] for b in batch], dtype=torch.int64),
        "inputs": _left_pad([b[1] for b in batch], length),
        "history": _left_pad([b[2] for b in batch], full),
        "targets": torch.tensor([b[3] for b in batch], dtype=torch.int64),
    }


class SequenceDataModule(DataModule):
    """Train windows in length buckets (sharded by rank under DDP); valid/test prefixes."""

    collate_train = staticmethod(collate_train)
    collate_eval = staticmethod(collate_eval)

    def __init__(self, split: Split, num_items: int, max_len: int = 50, batch_size: int = 128,
                 eval_batch_size: int = 512, num_workers: int = 0, seed: int = 42,
                 train_on: str = "every_position", stride: int = 10):
        super().__init__(batch_size, eval_batch_size, num_workers, seed)
        self.split = split
        self.num_items = num_items
        self.max_len = max_len
        self.train_set = training_samples(split.train_sequences, max_len, train_on, stride)
        self.sets = {"valid": EvalSet(split.valid, max_len), "test": EvalSet(split.test, max_len)}

    def train_dataset(self) -> TrainWindows | TrainPrefixes:
        return self.train_set

    def eval_dataset(self, split: str) -> EvalSet:
        return self.sets[split]

    def train_dataloader(self) -> DataLoader:
        rank, world = self.world()
        sampler = BucketBatchSampler(self.train_set.lengths, self.batch_size, self.seed,
                                     rank, world)
        sampler.set_epoch(self.epoch())
        return self.loader(self.train_set, train=True, batch_sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        rank, world = self.world()
        dataset = self.sets["valid"]
        if world > 1:  # each rank takes every world-th example; metric sums are all-reduced
            dataset = Subset(dataset, list(range(rank, len(dataset), world)))
        return self.loader(dataset, train=False)


SCORE_BUDGET = 1 << 26  # scores held at once during evaluation (float32: 256 MiB)


def score_rows(num_items: int, budget: int | None = None) -> int:
    """Users scored at once so that a [rows, num_items + 1] score matrix holds at most
    ``budget`` (default ``SCORE_BUDGET``) scores."""
    return max(1, (budget or SCORE_BUDGET) // (num_items + 1))


def row_chunks(batch: dict, rows: int):
    """``batch`` (a dict of tensors with one row per user) in pieces of at most ``rows`` rows."""
    n = len(batch["targets"])
    if n <= rows:
        yield batch
        return
    for start in range(0, n, rows):
        yield {key: value[start:start + rows] for key, value in batch.items()}


def eval_loader(examples: EvalExamples, cfg: NextItemConfig) -> DataLoader:
    """A loader over any evaluation examples (e.g. the test events of cold items)."""
    return DataLoader(EvalSet(examples, cfg.data.max_len), batch_size=cfg.train.eval_batch_size,
                      collate_fn=collate_eval)


def datamodule(cfg: NextItemConfig, split: Split, num_items: int) -> SequenceDataModule:
    t = cfg.train
    return SequenceDataModule(split, num_items, cfg.data.max_len, t.batch_size,
                              t.eval_batch_size, t.num_workers, t.seed, cfg.data.train_on,
                              cfg.data.window_stride)


def eval_datamodule(cfg: NextItemConfig, vocab=None) -> SequenceDataModule:
    """Prepare ``cfg``'s data and split for evaluation. With ``vocab`` (an artifact's), refuse
    data whose item vocabulary differs: the weights would score the wrong items."""
    dataset = prepare(cfg.data, quiet=True)
    if vocab is not None and dataset.vocab.items != vocab.items:
        raise RankprefError("the dataset's item vocabulary differs from the artifact's; it "
                            "was trained on other data")
    split, _ = training_split(dataset, cfg.data)
    return datamodule(cfg, split, dataset.num_items)
