"""Rebuild this slice from the shared O*NET 29.2 copy (``$RANKPREF_DATA_DIR/onet_29_2``).

Keeps the occupations of SOC major groups 15 (computer and mathematical) and 17 (architecture
and engineering), at most 15 alternate titles each (first in file order), and the related-
occupation rows among them. Rows are copied verbatim. (``Technology Skills.txt`` is left out
to keep the slice small; category descriptions then come from co-occurrence.)

    python datasets/onet_slice/make_slice.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rankpref.settings import data_dir

GROUPS = ("15-", "17-")
TITLES_PER_OCCUPATION = 15


def main() -> None:
    src = data_dir() / "onet_29_2"
    out = Path(__file__).resolve().parent
    (out / "raw").mkdir(exist_ok=True)
    lines = [line for line in open(src / "occupations_tech_skills.jsonl", encoding="utf-8")
             if json.loads(line)["soc"].startswith(GROUPS)]
    socs = {json.loads(line)["soc"] for line in lines}
    (out / "occupations_tech_skills.jsonl").write_text("".join(lines), encoding="utf-8")
    for name, keep in (("Related Occupations.txt", lambda r: r[0] in socs and r[1] in socs),
                       ("Alternate Titles.txt", None)):
        rows = open(src / "raw" / name, encoding="utf-8").read().split("\n")
        header, body = rows[0], [r for r in rows[1:] if r]
        if keep is None:
            seen = Counter()
            kept = []
            for r in body:
                soc = r.split("\t")[0]
                if soc in socs and seen[soc] < TITLES_PER_OCCUPATION:
                    seen[soc] += 1
                    kept.append(r)
        else:
            kept = [r for r in body if keep(r.split("\t"))]
        (out / "raw" / name).write_text("\n".join([header] + kept) + "\n", encoding="utf-8")
        print(name, len(kept))
    print("occupations", len(lines))


if __name__ == "__main__":
    main()
