"""Make the shipped wine-quality slices from the UCI files, rows copied verbatim
(red: all 1,599 rows; white: a seeded sample of 1,600 of 4,898 rows, in file order).

    python datasets/wine_quality/make_slice.py [folder with winequality-red.csv/-white.csv]
"""

import random
import sys
from pathlib import Path

src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/wine_quality")
here = Path(__file__).parent
red = (src / "winequality-red.csv").read_text().splitlines()
white = (src / "winequality-white.csv").read_text().splitlines()
keep = sorted(random.Random(0).sample(range(1, len(white)), 1600))
(here / "winequality-red_slice.csv").write_text("\n".join(red) + "\n")
(here / "winequality-white_slice.csv").write_text("\n".join([white[0]] + [white[i] for i in keep])
                                                   + "\n")
print(len(red) - 1, len(keep))
