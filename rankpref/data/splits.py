"""Train/valid/test splits of an encoded, chronologically sorted interaction table.

Two protocols:

* ``leave_one_out`` (the SASRec/S3-Rec protocol): per user, the last interaction is the test
  target, the second-last the valid target; training sees everything before the valid target.
  Users with fewer than 3 interactions have no valid/test example and are used for training only.
* ``temporal``: two global timestamp cut-offs at the quantiles ``1 - valid - test`` and
  ``1 - test``. Training sees only interactions before the first cut-off. A user's valid example
  is their first interaction in the valid window, its history everything before it; the test
  example is their first interaction at or after the second cut-off, its history everything
  before it (valid-window interactions included). Users need a non-empty history to be evaluated.

In both, no valid or test target is ever part of a training input (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from rankpref.errors import DataError


@dataclass
class EvalExamples:
    """One next-item example per row: a user, their history before the target, the target."""

    users: np.ndarray            # [n] user indices
    histories: list[np.ndarray]  # n arrays of item indices, chronological
    targets: np.ndarray          # [n] item indices

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, rows: np.ndarray) -> "EvalExamples":
        return EvalExamples(self.users[rows], [self.histories[i] for i in rows],
                            self.targets[rows])


@dataclass
class Split:
    train_users: np.ndarray           # [m] user indices
    train_sequences: list[np.ndarray]  # m chronological item-index arrays
    valid: EvalExamples
    test: EvalExamples
    protocol: str
    train_only_users: int = 0  # users too short to evaluate (kept for training)

    def stats(self) -> dict:
        return {
            "protocol": self.protocol,
            "train_users": int(len(self.train_users)),
            "train_interactions": int(sum(len(s) for s in self.train_sequences)),
            "valid_examples": len(self.valid),
            "test_examples": len(self.test),
            "train_only_users": self.train_only_users,
        }


def user_sequences(frame: pl.DataFrame) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Per user (ascending index): item indices and timestamps in chronological order."""
    grouped = (frame.group_by("user_idx", maintain_order=True)
               .agg(pl.col("item_idx"), pl.col("timestamp"))
               .sort("user_idx"))
    users = grouped["user_idx"].to_numpy().astype(np.int64)
    items = [np.asarray(s, dtype=np.int64) for s in grouped["item_idx"].to_list()]
    times = [np.asarray(s, dtype=np.int64) for s in grouped["timestamp"].to_list()]
    return users, items, times


def _empty() -> EvalExamples:
    return EvalExamples(np.zeros(0, np.int64), [], np.zeros(0, np.int64))


def _examples(rows: list[tuple[int, np.ndarray, int]]) -> EvalExamples:
    if not rows:
        return _empty()
    return EvalExamples(np.array([r[0] for r in rows], np.int64), [r[1] for r in rows],
                        np.array([r[2] for r in rows], np.int64))


def leave_one_out(frame: pl.DataFrame) -> Split:
    users, seqs, _ = user_sequences(frame)
    train_users, train_seqs, valid, test = [], [], [], []
    short = 0
    for user, seq in zip(users, seqs):
        if len(seq) < 3:
            short += 1
            train_users.append(user)
            train_seqs.append(seq)
            continue
        train_users.append(user)
        train_seqs.append(seq[:-2])
        valid.append((user, seq[:-2], int(seq[-2])))
        test.append((user, seq[:-1], int(seq[-1])))
    return Split(np.array(train_users, np.int64), train_seqs, _examples(valid), _examples(test),
                 "leave_one_out", short)


def temporal(frame: pl.DataFrame, valid_fraction: float = 0.1,
             test_fraction: float = 0.1) -> Split:
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1
            and valid_fraction + test_fraction < 1):
        raise DataError("valid and test fractions must be in (0, 1) and sum to < 1",
                        field="data.valid_fraction")
    ts = frame["timestamp"]
    cut_valid = ts.quantile(1 - valid_fraction - test_fraction, interpolation="lower")
    cut_test = ts.quantile(1 - test_fraction, interpolation="lower")
    if cut_valid >= cut_test:
        raise DataError("timestamps are too coarse for a temporal split: the valid and test "
                        f"cut-offs coincide ({cut_valid})", field="timestamp")
    users, seqs, times = user_sequences(frame)
    train_users, train_seqs, valid, test = [], [], [], []
    short = 0
    for user, seq, t in zip(users, seqs, times):
        n_train = int(np.searchsorted(t, cut_valid, side="left"))
        n_before_test = int(np.searchsorted(t, cut_test, side="left"))
        if n_train > 0:
            train_users.append(user)
            train_seqs.append(seq[:n_train])
        evaluated = False
        if n_before_test > n_train and n_train > 0:
            valid.append((user, seq[:n_train], int(seq[n_train])))
            evaluated = True
        if len(seq) > n_before_test and n_before_test > 0:
            test.append((user, seq[:n_before_test], int(seq[n_before_test])))
            evaluated = True
        if n_train > 0 and not evaluated:
            short += 1
    return Split(np.array(train_users, np.int64), train_seqs, _examples(valid), _examples(test),
                 "temporal", short)


def make_split(frame: pl.DataFrame, protocol: str, valid_fraction: float = 0.1,
               test_fraction: float = 0.1) -> Split:
    if protocol == "leave_one_out":
        return leave_one_out(frame)
    if protocol == "temporal":
        return temporal(frame, valid_fraction, test_fraction)
    raise DataError(f"unknown split {protocol!r}; use leave_one_out or temporal", field="data.split")


def hold_out_items(split: Split, items: np.ndarray) -> Split:
    """Remove ``items`` from training entirely (cold-start items): they are dropped from the
    training sequences and from the valid/test histories; valid/test *targets* keep them, so a
    model is asked to rank items it never saw in training. Sequences left shorter than 2 items
    (no training target) are dropped."""
    cold = np.asarray(items, dtype=np.int64)

    def keep(seq: np.ndarray) -> np.ndarray:
        return seq[~np.isin(seq, cold)]

    users, seqs = [], []
    for user, seq in zip(split.train_users, split.train_sequences):
        kept = keep(seq)
        if len(kept) >= 2:
            users.append(user)
            seqs.append(kept)

    def examples(ex: EvalExamples) -> EvalExamples:
        return EvalExamples(ex.users.copy(), [keep(h) for h in ex.histories], ex.targets.copy())

    return Split(np.asarray(users, dtype=np.int64), seqs, examples(split.valid),
                 examples(split.test), split.protocol, split.train_only_users)


def sample_items(num_items: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded random ``fraction`` of the item indices 1..num_items (sorted)."""
    if not 0 < fraction < 1:
        raise DataError(f"hold-out item fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    n = max(1, round(num_items * fraction))
    return np.sort(rng.choice(np.arange(1, num_items + 1), size=n, replace=False))


def subsample_train_users(split: Split, fraction: float, seed: int) -> Split:
    """Keep the training sequences of a seeded random ``fraction`` of the training users
    (valid/test are untouched: every user is still evaluated from their history)."""
    if not 0 < fraction <= 1:
        raise DataError(f"train user fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return split
    rng = np.random.default_rng(seed)
    n = max(1, round(len(split.train_users) * fraction))
    keep = np.sort(rng.choice(len(split.train_users), size=n, replace=False))
    return Split(split.train_users[keep], [split.train_sequences[i] for i in keep],
                 split.valid, split.test, split.protocol, split.train_only_users)
