"""Append-only rationale store in SQLite, keyed by (dataset, user, history, model, prompt).

Rows are only ever inserted (``INSERT OR IGNORE`` on the key), each batch in one transaction,
so a generation run killed at any moment (``kill -9`` included) loses at most the batch in
flight, and a rerun neither duplicates nor rewrites anything. Skips (empty or garbage answers,
users with no training history) are logged in their own table and counted.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from rankpref.errors import RankprefError

SCHEMA = """
CREATE TABLE IF NOT EXISTS rationales (
    key TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    user_id TEXT NOT NULL,
    history_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    chosen_item TEXT NOT NULL,
    rationale TEXT NOT NULL,
    raw TEXT,
    attempts INTEGER NOT NULL,
    score REAL,
    method TEXT NOT NULL DEFAULT 'generate',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rationales_user ON rationales(dataset, user_id);
CREATE TABLE IF NOT EXISTS skips (
    key TEXT NOT NULL,
    dataset TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL
);
"""

COLUMNS = ("key", "dataset", "user_id", "history_hash", "model", "backend", "prompt_version",
           "chosen_item", "rationale", "raw", "attempts", "score", "method", "created")
NUMERIC = {"attempts": "Int64", "score": "Float64", "created": "Float64"}


def history_hash(history_ids: list[str], chosen_id: str) -> str:
    return hashlib.sha256(("\x1f".join(history_ids) + "\x1e" + chosen_id).encode()).hexdigest()[:16]


def record_key(dataset: str, user_id: str, hist_hash: str, model: str, prompt_version: str) -> str:
    return hashlib.sha256("\x1f".join([dataset, user_id, hist_hash, model, prompt_version])
                          .encode()).hexdigest()


@dataclass
class RationaleStore:
    path: Path

    def __post_init__(self):
        self.path = Path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RankprefError(f"{self.path}: not a rationale cache ({exc})") from None

    def close(self) -> None:
        self.conn.close()

    def existing(self, keys: list[str]) -> set[str]:
        found = set()
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            q = f"SELECT key FROM rationales WHERE key IN ({','.join('?' * len(part))})"
            found.update(r[0] for r in self.conn.execute(q, part))
        return found

    def add(self, rows: list[dict], skips: list[dict] = ()) -> int:
        """Insert rows and skips in one transaction; returns how many rows were new."""
        now = time.time()
        defaults = {"raw": None, "score": None, "method": "generate", "created": now}
        values = [tuple({**defaults, **r}[c] for c in COLUMNS) for r in rows]
        with self.conn:  # BEGIN ... COMMIT (or ROLLBACK on error)
            self.conn.execute("BEGIN")
            before = self.conn.total_changes
            self.conn.executemany(
                f"INSERT OR IGNORE INTO rationales ({','.join(COLUMNS)}) "
                f"VALUES ({','.join('?' * len(COLUMNS))})", values)
            added = self.conn.total_changes - before
            self.conn.executemany(
                "INSERT INTO skips (key, dataset, user_id, reason, created) VALUES (?,?,?,?,?)",
                [(s["key"], s["dataset"], s["user_id"], s["reason"], now) for s in skips])
        return added

    def rows(self, dataset: str | None = None, user_id: str | None = None) -> list[dict]:
        q, args = "SELECT * FROM rationales", []
        conds = []
        if dataset is not None:
            conds.append("dataset=?")
            args.append(dataset)
        if user_id is not None:
            conds.append("user_id=?")
            args.append(user_id)
        if conds:
            q += " WHERE " + " AND ".join(conds)
        cur = self.conn.execute(q + " ORDER BY created, key", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def frame(self, dataset: str | None = None):
        """The rows as a polars frame with a fixed schema (NULL scores of plain rows and float
        scores of ToT rows in one column, whatever their order)."""
        import polars as pl

        schema = {c: getattr(pl, NUMERIC.get(c, "String")) for c in COLUMNS}
        return pl.DataFrame(self.rows(dataset=dataset), schema=schema, orient="row"
                            ) if self.count(dataset) else pl.DataFrame(schema=schema)

    def count(self, dataset: str | None = None) -> int:
        if dataset is None:
            return self.conn.execute("SELECT COUNT(*) FROM rationales").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM rationales WHERE dataset=?",
                                 (dataset,)).fetchone()[0]

    def skip_counts(self, dataset: str | None = None) -> dict[str, int]:
        q = "SELECT reason, COUNT(*) FROM skips"
        args = []
        if dataset:
            q += " WHERE dataset=?"
            args.append(dataset)
        return dict(self.conn.execute(q + " GROUP BY reason", args).fetchall())
