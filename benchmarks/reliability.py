"""Reliability probes: run the bad-input corpus and the fault tests, count what they found.

Every probe is a test that feeds one hostile input or fault (a damaged file, a bad option, a
full disk, a kill mid-training, a port in use, a malformed request) through the CLI or the
server, and fails on a traceback, a wrong exit code, a message that does not name the file,
line or field, or anything half-written left behind. So a passing probe counts 0 tracebacks
and 0 half-written files; the JSON lists every probe and its outcome.

    python benchmarks/reliability.py            # -> benchmarks/results/reliability.json
    python benchmarks/reliability.py --out /tmp/r.json

Optionally, with ``--mutants``, it adds the survivor count of the last ``make mutate`` run
(read from mutmut's ``mutants/`` folder through ``mutmut results``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBES = [
    "tests/bad_inputs",
    "tests/cli/test_cli_bad_input.py",
    "tests/serving/test_serve.py",
    "tests/tasks/next_item/test_distributed_and_resume.py::"
    "test_resume_after_a_stop_mid_training_matches_an_uninterrupted_run",
    "tests/core/test_lightning.py",
    "tests/core/test_config.py",
]


def run_probes(workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "probes.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"--junitxml={report}",
               *(["-n", str(workers)] if workers > 1 else []), *PROBES]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if not report.exists():
            raise SystemExit(f"pytest wrote no report:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        cases = []
        for case in ET.parse(report).getroot().iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = tag
                    message = (node.get("message") or "").splitlines()
                    break
            row = {"probe": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome}
            if outcome != "passed":
                row["message"] = message[0][:300] if message else ""
            cases.append(row)
    counts = {o: sum(c["outcome"] == o for c in cases)
              for o in ("passed", "failure", "error", "skipped")}
    return {"probes": len(cases), **counts,
            "each_probe_asserts": ["the exit code (unit probes: the exception)", "a message "
                                   "naming the file, line, field or option", "no traceback",
                                   "nothing half-written left"],
            "cases": cases}


def mutation_summary() -> dict | None:
    if not (ROOT / "mutants").is_dir():
        return None
    done = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT,
                          capture_output=True, text=True)
    states: dict[str, int] = {}
    for line in done.stdout.splitlines():
        if ":" in line:
            state = line.rsplit(":", 1)[1].strip()
            states[state] = states.get(state, 0) + 1
    return {"mutants": sum(states.values()), **states}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reliability.json")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mutants", action="store_true", help="add the last mutmut run's counts")
    args = parser.parse_args()
    result = {"benchmark": "reliability", "date": dt.date.today().isoformat(),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
              "probe_sets": PROBES, **run_probes(args.workers)}
    if args.mutants:
        result["mutation"] = mutation_summary()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=2))


if __name__ == "__main__":
    main()
