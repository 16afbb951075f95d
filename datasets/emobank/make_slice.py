"""Make the shipped EmoBank slice from the full corpus (seeded, keeps the official split).

    python datasets/emobank/make_slice.py [path/to/emobank.csv]
"""

import sys
from pathlib import Path

import polars as pl

SIZES = {"train": 1600, "dev": 200, "test": 200}

src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/emobank/emobank.csv")
df = pl.read_csv(src)
parts = [df.filter(pl.col("split") == name).sample(n, seed=0, shuffle=True)
         for name, n in SIZES.items()]
out = pl.concat(parts).sort("id")
out.write_csv(Path(__file__).parent / "emobank_slice.csv")
print(out.height, out.group_by("split").len().sort("split").rows())
