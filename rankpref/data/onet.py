"""O*NET 29.2 (CC BY 4.0, USDOL/ETA): occupations, skill concepts and two ranking tasks.

A folder holds ``occupations_tech_skills.jsonl`` (one occupation per line with its
description, tasks, technology-skill categories and examples) and, under ``raw/``, O*NET's
``Related Occupations.txt`` and ``Alternate Titles.txt`` (tab-separated, header row). The
shared copy is ``$RANKPREF_DATA_DIR/onet_29_2``; ``datasets/onet_slice`` ships a small slice
in the same layout.

Tasks (queries rank all occupations of the folder):

* ``titles``: an alternate job title -> its occupation(s). Titles are normalised (case,
  spaces) and split by a hash of the normalised title, so one title string lives in exactly
  one split; a title listed under several occupations has all of them as relevant items.
* ``related``: an occupation -> its 20 ranked related occupations, graded 3 (Primary-Short),
  2 (Primary-Long), 1 (Supplemental); split by query occupation. Training pairs whose
  reverse pair belongs to a valid/test query are dropped (counted), and valid/test occupations'
  concept labels are hidden from training, so held-out concept prediction is measurable.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from rankpref.data.concepts import ConceptVocabulary
from rankpref.errors import DataError
from rankpref.settings import data_dir, shipped

OCCUPATIONS_FILE = "occupations_tech_skills.jsonl"
RELATED_FILE = Path("raw") / "Related Occupations.txt"
TITLES_FILE = Path("raw") / "Alternate Titles.txt"
SKILLS_FILE = Path("raw") / "Technology Skills.txt"
TIER_GAIN = {"Primary-Short": 3, "Primary-Long": 2, "Supplemental": 1}
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Occupation:
    soc: str
    title: str
    description: str
    tasks: tuple[str, ...]
    skill_categories: tuple[str, ...]
    skill_examples: tuple[str, ...]


def resolve_folder(name: str | None = "onet", path: str | Path | None = None) -> Path:
    """``onet`` = the shared O*NET 29.2 copy, ``onet-slice`` = the shipped slice, or a path."""
    if path is not None:
        folder = Path(path)
    elif name == "onet":
        folder = data_dir() / "onet_29_2"
    elif name == "onet-slice":
        folder = shipped("onet_slice")
    else:
        raise DataError(f"unknown O*NET data {name!r}: use onet, onet-slice or a path",
                        field="data.name")
    if not (folder / OCCUPATIONS_FILE).exists():
        raise DataError(f"no {OCCUPATIONS_FILE} here (set RANKPREF_DATA_DIR or data.path)",
                        path=folder)
    return folder


def _str_list(value, path, line, name) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError("expected a list of strings", path=path, line=line, field=name)
    return tuple(v.strip() for v in value if v.strip())


def read_occupations(folder: str | Path) -> list[Occupation]:
    path = Path(folder) / OCCUPATIONS_FILE
    out, seen = [], set()
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DataError(f"not JSON ({exc})", path=path, line=line_no) from None
            for key in ("soc", "title", "description"):
                if not isinstance(obj.get(key), str) or not obj[key].strip():
                    raise DataError("missing or empty", path=path, line=line_no, field=key)
            if obj["soc"] in seen:
                raise DataError(f"duplicate occupation {obj['soc']}", path=path, line=line_no,
                                field="soc")
            seen.add(obj["soc"])
            out.append(Occupation(
                obj["soc"], obj["title"].strip(), obj["description"].strip(),
                _str_list(obj.get("tasks", []), path, line_no, "tasks"),
                _str_list(obj.get("skill_categories", []), path, line_no, "skill_categories"),
                _str_list(obj.get("skill_examples", []), path, line_no, "skill_examples")))
    if not out:
        raise DataError("no occupations", path=path)
    return out


def _read_tsv(path: Path, columns: list[str]):
    """Yield (line number, row dict) for an O*NET tab-separated file with a header."""
    if not path.exists():
        raise DataError("file not found", path=path)
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DataError("empty file", path=path)
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"missing column(s) {', '.join(missing)}", path=path, line=1)
        pos = [header.index(c) for c in columns]
        for line_no, row in enumerate(reader, 2):
            if len(row) != len(header):
                raise DataError(f"{len(row)} fields, the header has {len(header)}", path=path,
                                line=line_no)
            yield line_no, {c: row[p].strip() for c, p in zip(columns, pos)}


def occupation_text(occ: Occupation, max_tasks: int | None = None) -> str:
    """``"<title>. <description> Tasks: <task> <task> ..."``."""
    tasks = occ.tasks if max_tasks is None else occ.tasks[:max_tasks]
    text = f"{occ.title.rstrip('.')}. {occ.description}"
    if tasks:
        text += " Tasks: " + " ".join(tasks)
    return text


def normalise_title(title: str) -> str:
    return re.sub(r"\s+", " ", title.strip().lower())


def hash_split(key: str, seed: int, valid_fraction: float, test_fraction: float) -> str:
    """A stable split from a hash of ``key``: the same key always lands in the same split."""
    u = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:12], 16) / 16 ** 12
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def category_examples(folder: str | Path, occupations: list[Occupation]) -> dict[str, dict[str, int]]:
    """Category -> {example: number of occupations}; from ``raw/Technology Skills.txt`` when present
    (O*NET pairs each example with its category), else from co-occurrence within occupations."""
    out: dict[str, dict[str, int]] = {}
    path = Path(folder) / SKILLS_FILE
    if path.exists():
        socs = {o.soc for o in occupations}
        for _, row in _read_tsv(path, ["O*NET-SOC Code", "Example", "Commodity Title"]):
            if row["O*NET-SOC Code"] in socs and row["Example"] and row["Commodity Title"]:
                bucket = out.setdefault(row["Commodity Title"], {})
                bucket[row["Example"]] = bucket.get(row["Example"], 0) + 1
        return out
    for occ in occupations:
        for c in set(occ.skill_categories):
            bucket = out.setdefault(c, {})
            for e in set(occ.skill_examples):
                bucket[e] = bucket.get(e, 0) + 1
    return out


def concept_vocabulary(occupations: list[Occupation],
                       kind: Literal["categories", "examples", "both"] = "categories",
                       min_occupations: int = 1, folder: str | Path | None = None,
                       source: str = "O*NET 29.2") -> ConceptVocabulary:
    """Skill categories and/or skill examples used by at least ``min_occupations`` occupations.

    Descriptions: a category lists its most common examples (see :func:`category_examples`);
    an example is described by its own name.
    """
    cat_count, ex_count = {}, {}
    for occ in occupations:
        for c in set(occ.skill_categories):
            cat_count[c] = cat_count.get(c, 0) + 1
        for e in set(occ.skill_examples):
            ex_count[e] = ex_count.get(e, 0) + 1
    examples = category_examples(folder, occupations) if folder is not None else {}
    names, descriptions = [], []
    if kind in ("categories", "both"):
        for c in sorted(n for n, k in cat_count.items() if k >= min_occupations):
            top = sorted(examples.get(c, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:20]
            names.append(c)
            descriptions.append(f"{c}: " + ", ".join(e for e, _ in top) if top else c)
    if kind in ("examples", "both"):
        taken = set(names)
        for e in sorted(n for n, k in ex_count.items() if k >= min_occupations):
            if e in taken:  # an example spelled like a category: keep one dimension
                continue
            names.append(e)
            descriptions.append(e)
    if not names:
        raise DataError(f"no skill {kind} used by at least {min_occupations} occupations",
                        field="concepts.min_occupations")
    return ConceptVocabulary(tuple(names), tuple(descriptions),
                             f"{source} skill {kind} (>= {min_occupations} occupations)")


def occupation_concepts(occ: Occupation, kind: str) -> list[str]:
    if kind == "categories":
        return list(occ.skill_categories)
    if kind == "examples":
        return list(occ.skill_examples)
    return list(occ.skill_categories) + list(occ.skill_examples)


@dataclass
class RankingTask:
    """Queries that rank every item (occupation) of a folder, with graded relevance."""

    name: str
    item_ids: list[str]                  # SOC codes
    item_titles: list[str]
    item_texts: list[str]
    item_labels: list[list[str]]         # concept names per item
    item_label_train: np.ndarray         # bool: may this item's labels supervise training?
    query_ids: list[str]
    query_texts: list[str]
    query_labels: list[list[str]]        # concept names per query (for concept prediction)
    query_split: list[str]               # train / valid / test
    relevance: list[dict[int, float]]    # per query: item index -> gain (> 0)
    self_item: list[int]                 # item index that is the query itself (-1 if none)
    stats: dict = field(default_factory=dict)

    def indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use train, valid or test", field="split")
        return np.array([i for i, s in enumerate(self.query_split) if s == split], dtype=np.int64)

    def relevance_matrix(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), n_items] float32 gains (0 = not relevant)."""
        out = np.zeros((len(rows), len(self.item_ids)), dtype=np.float32)
        for r, q in enumerate(rows):
            for item, gain in self.relevance[q].items():
                out[r, item] = gain
        return out

    def exclude_matrix(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), n_items] bool: items never ranked for the query (the query itself)."""
        out = np.zeros((len(rows), len(self.item_ids)), dtype=bool)
        for r, q in enumerate(rows):
            if self.self_item[q] >= 0:
                out[r, self.self_item[q]] = True
        return out


def _items(occupations, kind, max_tasks):
    return ([o.soc for o in occupations], [o.title for o in occupations],
            [occupation_text(o, max_tasks) for o in occupations],
            [occupation_concepts(o, kind) for o in occupations])


def title_task(folder: str | Path, *, concept_kind: str = "categories", valid_fraction: float = 0.05,
               test_fraction: float = 0.1, seed: int = 0, max_tasks: int | None = None,
               occupations: list[Occupation] | None = None) -> RankingTask:
    folder = Path(folder)
    occupations = occupations or read_occupations(folder)
    index = {o.soc: i for i, o in enumerate(occupations)}
    titles: dict[str, tuple[str, dict[int, float]]] = {}
    unknown_soc = 0
    for _, row in _read_tsv(folder / TITLES_FILE, ["O*NET-SOC Code", "Alternate Title"]):
        item = index.get(row["O*NET-SOC Code"])
        if item is None:  # an occupation without technology skills (not in the catalogue)
            unknown_soc += 1
            continue
        if not row["Alternate Title"]:
            continue
        key = normalise_title(row["Alternate Title"])
        text, rel = titles.setdefault(key, (row["Alternate Title"], {}))
        rel[item] = 1.0
    if not titles:
        raise DataError("no alternate titles for the occupations of this folder",
                        path=folder / TITLES_FILE)
    item_ids, item_titles, item_texts, item_labels = _items(occupations, concept_kind, max_tasks)
    keys = sorted(titles)
    q_labels = []
    for k in keys:
        names: list[str] = []
        for item in titles[k][1]:
            names.extend(n for n in item_labels[item] if n not in names)
        q_labels.append(names)
    split = [hash_split(k, seed, valid_fraction, test_fraction) for k in keys]
    stats = {"queries": len(keys), "items": len(item_ids),
             "multi_occupation_titles": sum(len(titles[k][1]) > 1 for k in keys),
             "rows_outside_catalogue": unknown_soc,
             **{f"{s}_queries": split.count(s) for s in SPLITS}}
    return RankingTask("titles", item_ids, item_titles, item_texts, item_labels,
                       np.ones(len(item_ids), dtype=bool), keys, [titles[k][0] for k in keys],
                       q_labels, split, [titles[k][1] for k in keys], [-1] * len(keys), stats)


def related_task(folder: str | Path, *, concept_kind: str = "categories", valid_fraction: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 0, max_tasks: int | None = None,
                 occupations: list[Occupation] | None = None) -> RankingTask:
    folder = Path(folder)
    occupations = occupations or read_occupations(folder)
    index = {o.soc: i for i, o in enumerate(occupations)}
    relevance: list[dict[int, float]] = [{} for _ in occupations]
    outside = 0
    for line_no, row in _read_tsv(folder / RELATED_FILE, ["O*NET-SOC Code", "Related O*NET-SOC Code",
                                                          "Relatedness Tier"]):
        tier = row["Relatedness Tier"]
        if tier not in TIER_GAIN:
            raise DataError(f"unknown relatedness tier {tier!r}", path=folder / RELATED_FILE,
                            line=line_no, field="Relatedness Tier")
        q, d = index.get(row["O*NET-SOC Code"]), index.get(row["Related O*NET-SOC Code"])
        if q is None or d is None or q == d:
            outside += 1
            continue
        relevance[q][d] = float(max(TIER_GAIN[tier], relevance[q].get(d, 0)))
    item_ids, item_titles, item_texts, item_labels = _items(occupations, concept_kind, max_tasks)
    split = [hash_split(soc, seed, valid_fraction, test_fraction) for soc in item_ids]
    keep = [i for i, r in enumerate(relevance) if r]
    held = {i for i in keep if split[i] != "train"}
    dropped = 0
    for q in keep:  # a training pair must not reveal a held-out query's list
        if split[q] == "train":
            for d in [d for d in relevance[q] if d in held and q in relevance[d]]:
                del relevance[q][d]
                dropped += 1
    keep = [i for i in keep if relevance[i]]
    label_train = np.array([s == "train" for s in split], dtype=bool)
    q_split = [split[i] for i in keep]
    stats = {"queries": len(keep), "items": len(item_ids), "pairs_outside_catalogue": outside,
             "train_pairs_dropped_reverse_of_heldout": dropped,
             **{f"{s}_queries": q_split.count(s) for s in SPLITS}}
    return RankingTask("related", item_ids, item_titles, item_texts, item_labels, label_train,
                       [item_ids[i] for i in keep], [item_texts[i] for i in keep],
                       [item_labels[i] for i in keep], q_split, [relevance[i] for i in keep],
                       keep, stats)


def load_task(task: Literal["titles", "related"], folder: str | Path, **kwargs) -> RankingTask:
    if task == "titles":
        return title_task(folder, **kwargs)
    if task == "related":
        return related_task(folder, **kwargs)
    raise DataError(f"unknown task {task!r}; use titles or related", field="data.task")
