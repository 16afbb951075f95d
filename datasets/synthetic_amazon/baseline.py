#!/usr/bin/env python3
"""Sanity baselines on the synthetic data set (numpy + stdlib only).

Leave-one-out: each user's last interaction (by unixReviewTime; ties keep file order) is
the test item, everything before it is history and training data.  Full ranking over all
items, excluding the items in the user's history.

* popularity: training interaction counts;
* transition: counts of item-to-item transitions (consecutive pairs in the training
  sequences) from the user's last history item, ties broken by popularity.

Usage::

    python datasets/synthetic_amazon/baseline.py [--data DIR] [--k 10]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np


def load_sequences(path: Path) -> tuple[list[list[int]], int]:
    per_user: dict[str, list[tuple[int, int, str]]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            r = json.loads(line)
            per_user.setdefault(r["reviewerID"], []).append((int(r["unixReviewTime"]), n, r["asin"]))
    index: dict[str, int] = {}
    seqs = []
    for u in sorted(per_user):
        seq = []
        for _, _, a in sorted(per_user[u]):
            seq.append(index.setdefault(a, len(index)))
        seqs.append(seq)
    return seqs, len(index)


def evaluate(seqs: list[list[int]], n_items: int, k: int) -> dict[str, dict[str, float]]:
    train = [s[:-1] for s in seqs]
    pop = np.bincount(np.concatenate([np.array(s) for s in train]), minlength=n_items).astype(np.float64)
    trans = np.zeros((n_items, n_items))
    for s in train:
        if len(s) > 1:
            np.add.at(trans, (np.array(s[:-1]), np.array(s[1:])), 1.0)
    tie = pop / (pop.max() + 1.0)  # < 1: only breaks ties between equal transition counts
    out = {}
    for name in ("popularity", "transition"):
        hits, ndcg = 0.0, 0.0
        for s in seqs:
            hist, target = s[:-1], s[-1]
            score = pop.copy() if name == "popularity" else trans[hist[-1]] + tie
            score[hist] = -np.inf
            better = int((score > score[target]).sum())
            if better < k:
                hits += 1.0
                ndcg += 1.0 / np.log2(better + 2.0)
        out[name] = {f"HR@{k}": hits / len(seqs), f"NDCG@{k}": ndcg / len(seqs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    seqs, n_items = load_sequences(args.data / "reviews.json.gz")
    res = evaluate(seqs, n_items, args.k)
    print(f"users {len(seqs)}  items {n_items}  (leave-one-out, full ranking, history excluded)")
    for name, m in res.items():
        print(f"{name:11s} " + "  ".join(f"{key} {v:.4f}" for key, v in m.items()))


if __name__ == "__main__":
    main()
