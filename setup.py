"""Build hook: copy the shipped data sets (``datasets/``) into the wheel as ``rankpref/_data``,
so an installed rankpref finds its demo data and slices without the checkout. Everything else
about the package is declared in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# what rankpref reads at run time (see rankpref.settings.shipped); scripts and notes stay out
SHIPPED = ("synthetic_amazon/reviews.json.gz", "synthetic_amazon/meta.json.gz",
           "emobank/emobank_slice.csv", "wine_quality/winequality-red_slice.csv",
           "wine_quality/winequality-white_slice.csv", "onet_slice/occupations_tech_skills.jsonl",
           "onet_slice/raw")


class BuildWithData(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads datasets/ in place
            return
        root = Path(__file__).resolve().parent / "datasets"
        target = Path(self.build_lib) / "rankpref" / "_data"
        for rel in SHIPPED:
            src, dst = root / rel, target / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)
        for folder in sorted({rel.split("/")[0] for rel in SHIPPED}):
            credit = root / folder / "README.md"  # the credit and licence of each slice
            dst = target / folder / "README.md"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(credit, dst)


setup(cmdclass={"build_py": BuildWithData})
