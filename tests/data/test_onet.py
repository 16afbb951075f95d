"""O*NET reading, the two ranking tasks and their leakage-free splits (shipped slice + shared copy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rankpref.data import onet
from rankpref.errors import DataError


@pytest.fixture(scope="module")
def slice_folder():
    return onet.resolve_folder("onet-slice")


def test_read_slice(slice_folder):
    occs = onet.read_occupations(slice_folder)
    assert len(occs) == 92 and all(o.soc.startswith(("15-", "17-")) for o in occs)
    assert all(o.skill_categories for o in occs)
    text = onet.occupation_text(occs[0], max_tasks=2)
    assert text.startswith(occs[0].title) and "Tasks: " in text


def test_title_task_split_has_no_leakage(slice_folder):
    task = onet.title_task(slice_folder, seed=3, valid_fraction=0.2, test_fraction=0.2)
    keys = {s: {task.query_ids[i] for i in task.indices(s)} for s in onet.SPLITS}
    assert all(keys[s] for s in onet.SPLITS)
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["valid"])
    norm = {s: {onet.normalise_title(task.query_texts[i]) for i in task.indices(s)}
            for s in onet.SPLITS}
    assert not (norm["train"] & norm["test"])  # one normalised title string, one split
    # every alternate-title row is a relevant (query, occupation) pair
    rows = (slice_folder / onet.TITLES_FILE).read_text().strip().split("\n")[1:]
    pairs = {(onet.normalise_title(r.split("\t")[1]), r.split("\t")[0]) for r in rows}
    got = {(q, task.item_ids[i]) for q, rel in zip(task.query_ids, task.relevance) for i in rel}
    assert got == pairs
    # the query's concept labels are its occupations' concepts
    q = int(task.indices("test")[0])
    item = next(iter(task.relevance[q]))
    assert set(task.item_labels[item]) <= set(task.query_labels[q])
    # the same seed gives the same split; another seed another
    again = onet.title_task(slice_folder, seed=3, valid_fraction=0.2, test_fraction=0.2)
    assert again.query_split == task.query_split
    other = onet.title_task(slice_folder, seed=4, valid_fraction=0.2, test_fraction=0.2)
    assert other.query_split != task.query_split


def test_related_task_grades_and_leakage(slice_folder):
    task = onet.related_task(slice_folder, seed=0)
    rows = [r.split("\t") for r in
            (slice_folder / onet.RELATED_FILE).read_text().strip().split("\n")[1:]]
    index = {soc: i for i, soc in enumerate(task.item_ids)}
    q = int(task.indices("test")[0])
    soc = task.query_ids[q]
    expect = {index[r[1]]: float(onet.TIER_GAIN[r[2]]) for r in rows if r[0] == soc}
    assert task.relevance[q] == expect  # held-out lists are complete
    assert task.item_ids[task.self_item[q]] == soc
    held = {task.self_item[i] for i in range(len(task.query_ids)) if task.query_split[i] != "train"}
    for i in task.indices("train"):
        me = task.self_item[i]
        for d in task.relevance[i]:  # no training pair is the reverse of a held-out pair
            if d in held:
                j = task.self_item.index(d)
                assert me not in task.relevance[j]
    assert task.stats["train_pairs_dropped_reverse_of_heldout"] > 0
    # held-out occupations' concept labels never supervise training
    assert not task.item_label_train[[task.self_item[i] for i in task.indices("test")]].any()
    rel = task.relevance_matrix(task.indices("test"))
    assert rel.shape == (len(task.indices("test")), 92) and set(np.unique(rel)) <= {0, 1, 2, 3}
    excl = task.exclude_matrix(task.indices("test"))
    assert excl.sum() == len(task.indices("test"))


def test_concept_vocabulary_kinds(slice_folder):
    occs = onet.read_occupations(slice_folder)
    cats = onet.concept_vocabulary(occs, "categories", folder=slice_folder)
    assert set(cats.names) == {c for o in occs for c in o.skill_categories}
    ex = onet.concept_vocabulary(occs, "examples", min_occupations=5)
    assert all(sum(e in o.skill_examples for o in occs) >= 5 for e in ex.names)
    both = onet.concept_vocabulary(occs, "both", min_occupations=5)
    assert len(both) <= len(cats) + len(ex)
    with pytest.raises(DataError, match="no skill examples used by at least 1000"):
        onet.concept_vocabulary(occs, "examples", min_occupations=1000)


def test_bad_files(tmp_path, slice_folder):
    with pytest.raises(DataError, match="no occupations_tech_skills.jsonl"):
        onet.resolve_folder(path=tmp_path)
    with pytest.raises(DataError, match="unknown O\\*NET data"):
        onet.resolve_folder("imdb")
    good = json.loads((slice_folder / onet.OCCUPATIONS_FILE).read_text().split("\n")[0])
    bad = dict(good, title="")
    (tmp_path / onet.OCCUPATIONS_FILE).write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match="line 2, field 'title'"):
        onet.read_occupations(tmp_path)
    (tmp_path / onet.OCCUPATIONS_FILE).write_text(json.dumps(dict(good, tasks="x")) + "\n")
    with pytest.raises(DataError, match="line 1, field 'tasks'"):
        onet.read_occupations(tmp_path)
    (tmp_path / onet.OCCUPATIONS_FILE).write_text(json.dumps(good) + "\n")
    (tmp_path / "raw").mkdir()
    (tmp_path / onet.RELATED_FILE).write_text(
        "O*NET-SOC Code\tRelated O*NET-SOC Code\tRelatedness Tier\tIndex\n"
        f"{good['soc']}\t15-0000.00\tVery Close\t1\n")
    with pytest.raises(DataError, match="line 2, field 'Relatedness Tier'"):
        onet.related_task(tmp_path)
    (tmp_path / onet.TITLES_FILE).write_text("O*NET-SOC Code\tAlternate Title\n"
                                             f"{good['soc']}\tData Wrangler\textra\n")
    with pytest.raises(DataError, match="line 2: 3 fields, the header has 2"):
        onet.title_task(tmp_path)
    (tmp_path / onet.TITLES_FILE).write_text("Code\tAlternate Title\n")
    with pytest.raises(DataError, match="missing column"):
        onet.title_task(tmp_path)


def test_full_onet(shared_data):
    folder = shared_data("onet_29_2")
    titles = onet.title_task(folder)
    assert len(titles.item_ids) == 923 and titles.stats["test_queries"] > 3000
    related = onet.related_task(folder)
    assert len(related.query_ids) == 923
    assert all(len(r) <= 20 for r in related.relevance)
