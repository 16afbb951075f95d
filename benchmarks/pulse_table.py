"""Print the README tables of ``benchmarks/results/pulse.json`` (markdown), so the README
quotes the JSON exactly: ``python benchmarks/pulse_table.py [results.json]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "pulse.json"
COLS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def _valid(row: dict) -> dict:
    """A row's valid metrics (``dev`` in result files written before the rename)."""
    return row["valid"] if "valid" in row else row["dev"]


def main_table(data: dict) -> list[str]:
    lines = ["| dataset | model | " + " | ".join(f"test {c}" for c in COLS)
             + " | valid ndcg@10 | users with rationale | train s | best / run epochs |",
             "|---" * (len(COLS) + 6) + "|"]
    for dataset, rows in data.get("main", {}).items():
        base = rows.get("sasrec-ce", {}).get("test", {}).get("ndcg@10")
        order = ["sasrec-ce", "pulse-text", "pulse-template", "pulse-smollm2", "pulse-smollm2-tot"]
        for name, r in sorted(rows.items(), key=lambda kv: order.index(kv[0])
                              if kv[0] in order else len(order)):
            if "skipped" in r:
                lines.append(f"| {dataset} | {name} | not run: {r['skipped']} |")
                continue
            ratio = f" ({r['test']['ndcg@10'] / base:.2f}x)" if base and name != "sasrec-ce" else ""
            cells = [f"{r['test'][c]:.4f}" for c in COLS]
            cells[1] += ratio
            lines.append(f"| {dataset} | {name} | " + " | ".join(cells)
                         + f" | {_valid(r)['ndcg@10']:.4f} | {r['users_with_rationale']:,} | "
                         f"{r['train_seconds']:.0f} | {r['best_epoch']} / {r['epochs_run']} |")
    return lines


def cross_table(data: dict) -> list[str]:
    lines = ["| transfer | target users | scratch test ndcg@10 | transfer test ndcg@10 | "
             "scratch recall@10 | transfer recall@10 |", "|---|---|---|---|---|---|"]
    for pair, fractions in data.get("cross_domain", {}).items():
        for fraction, modes in fractions.items():
            s, t = modes.get("scratch"), modes.get("transfer")
            cell = lambda r, k: f"{r['test'][k]:.4f}" if r else "not run"  # noqa: E731
            lines.append(f"| {pair} | {fraction} | {cell(s, 'ndcg@10')} | {cell(t, 'ndcg@10')} "
                         f"| {cell(s, 'recall@10')} | {cell(t, 'recall@10')} |")
    return lines


def cold_table(data: dict) -> list[str]:
    lines = ["| dataset | model | cold-target test events | cold recall@10 | cold ndcg@10 | "
             "all test ndcg@10 |", "|---|---|---|---|---|---|"]
    for dataset, rows in data.get("cold_start", {}).items():
        for name, r in rows.items():
            c = r["cold_start"]
            lines.append(f"| {dataset} | {name} | {c['test_events']} | "
                         f"{c['test'].get('recall@10', 0):.4f} | {c['test'].get('ndcg@10', 0):.4f}"
                         f" | {r['test']['ndcg@10']:.4f} |")
    return lines


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else RESULTS).read_text())
    tables = [main_table(data)]
    if data.get("variants"):
        tables.append(main_table({"main": data["variants"]}))
    for table in (*tables, cross_table(data), cold_table(data)):
        print("\n".join(table) + "\n")
