"""Concept vocabularies: the explicit dimensions of a SESA space.

A vocabulary is an ordered list of unique, non-empty concept names, each optionally with a
description (used by ESA-style baselines and shown in explanations). It can come from any
source: O*NET technology-skill categories or examples, Amazon categories or brands,
MovieLens genres. Labels (lists of concept names per text) turn into multi-hot rows; names
that are not in the vocabulary are either an error or counted and skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from rankpref.errors import DataError, UnknownIdError
from rankpref.io import write_json


@dataclass(frozen=True)
class LabelStats:
    """What :meth:`ConceptVocabulary.multi_hot` counted while reading labels."""

    rows: int
    unknown: int = 0          # label names not in the vocabulary (skipped)
    no_concepts: int = 0      # rows left with no known concept
    unknown_names: tuple[str, ...] = ()  # up to 10 examples

    def to_json(self) -> dict:
        return {"rows": self.rows, "unknown": self.unknown, "no_concepts": self.no_concepts,
                "unknown_names": list(self.unknown_names)}


@dataclass(frozen=True)
class ConceptVocabulary:
    names: tuple[str, ...]
    descriptions: tuple[str, ...] | None = None
    source: str = ""
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        where = self.source or "concept vocabulary"
        if not names:
            raise DataError("the concept vocabulary is empty", path=where)
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"concept {i} has an empty name", path=where, line=i + 1,
                                field="name")
            if name != name.strip():
                raise DataError(f"concept {i} {name!r} has leading or trailing spaces",
                                path=where, line=i + 1, field="name")
            if name in index:
                raise DataError(f"duplicate concept {name!r} (entries {index[name] + 1} and "
                                f"{i + 1})", path=where, line=i + 1, field="name")
            index[name] = i
        if self.descriptions is not None:
            descriptions = tuple("" if d is None else str(d) for d in self.descriptions)
            if len(descriptions) != len(names):
                raise DataError(f"{len(descriptions)} descriptions for {len(names)} concepts",
                                path=where, field="descriptions")
            object.__setattr__(self, "descriptions", descriptions)
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise UnknownIdError(f"unknown concept {name!r} (the vocabulary has "
                                 f"{len(self)} concepts)") from None

    def description(self, i: int) -> str:
        return self.descriptions[i] if self.descriptions is not None else ""

    def multi_hot(self, labels: Sequence[Iterable[str]],
                  on_unknown: Literal["error", "skip"] = "error",
                  where: str = "labels") -> tuple[np.ndarray, LabelStats]:
        """[rows, concepts] float32 0/1 matrix; unknown names raise or are counted and skipped.

        A row with no known concept is all zeros and counted in ``no_concepts``: callers mask
        such rows out of concept supervision (see :func:`label_mask`).
        """
        out = np.zeros((len(labels), len(self)), dtype=np.float32)
        unknown, examples, empty = 0, [], 0
        for row, names in enumerate(labels):
            known = 0
            for name in names:
                i = self._index.get(name)
                if i is None:
                    if on_unknown == "error":
                        raise DataError(f"concept {name!r} is not in the vocabulary",
                                        path=where, line=row + 1, field="concepts")
                    unknown += 1
                    if len(examples) < 10 and name not in examples:
                        examples.append(name)
                    continue
                out[row, i] = 1.0
                known += 1
            empty += known == 0
        return out, LabelStats(len(labels), unknown, empty, tuple(examples))

    def to_json(self) -> dict:
        return {"source": self.source, "names": list(self.names),
                "descriptions": None if self.descriptions is None else list(self.descriptions)}

    @classmethod
    def from_json(cls, obj: dict, where: str = "concepts.json") -> "ConceptVocabulary":
        if not isinstance(obj, dict) or not isinstance(obj.get("names"), list):
            raise DataError("expected an object with a 'names' list", path=where, field="names")
        return cls(tuple(obj["names"]), obj.get("descriptions"), obj.get("source") or where)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "ConceptVocabulary":
        path = Path(path)
        try:
            obj = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read concept vocabulary ({exc})", path=path) from None
        return cls.from_json(obj, str(path))


def label_mask(multi_hot: np.ndarray) -> np.ndarray:
    """True for rows that have at least one known concept (those take part in supervision)."""
    return multi_hot.sum(axis=1) > 0


def from_names(names: Sequence[str], descriptions: Sequence[str] | None = None,
               source: str = "") -> ConceptVocabulary:
    """A vocabulary from an explicit list (duplicates and empty names are errors)."""
    return ConceptVocabulary(tuple(names), None if descriptions is None else tuple(descriptions),
                             source)


def from_label_lists(labels: Sequence[Iterable[str]], min_count: int = 1,
                     source: str = "") -> ConceptVocabulary:
    """A vocabulary of every name used by at least ``min_count`` rows (each row counts a name once).

    Suits Amazon categories or brands and MovieLens genres; names are stripped, empty ones
    dropped, and the order is by descending count, then name, so it is deterministic.
    """
    counts = Counter()
    for names in labels:
        counts.update({str(n).strip() for n in names if n is not None and str(n).strip()})
    kept = sorted((n for n, c in counts.items() if c >= min_count), key=lambda n: (-counts[n], n))
    if not kept:
        raise DataError(f"no concept is used by at least {min_count} rows", path=source or "labels")
    return ConceptVocabulary(tuple(kept), None, source)
