"""The thought space (towers, training, save/load) and Tree-of-Thought refinement."""

from __future__ import annotations

import json

import pytest
import torch

from rankpref.tasks.next_item import load_config
from rankpref.data.datasets import prepare
from rankpref.errors import RankprefError
from rankpref.models.thought_space import ThoughtSpace, ThoughtSpaceConfig
from rankpref.rationales.cache import RationaleStore
from rankpref.rationales.generate import ItemInfo, training_examples
from rankpref.rationales.signal import template_table
from rankpref.rationales.tot import ToTSettings, refine, refine_into_store
from rankpref.text import TextEncoder
from rankpref.tasks.next_item.thought_space import (Pairs, behaviour_text, fit_thought_space,
                                                    load_thought_space, retrieval_metrics,
                                                    thought_pairs, user_behaviour_texts)
from rankpref.tasks.next_item.data import training_split


def test_towers_output_unit_vectors_and_score_is_cosine():
    space = ThoughtSpace(ThoughtSpaceConfig(input_dim=6, dim=4, hidden=8)).eval()
    b, r = torch.randn(5, 6), torch.randn(5, 6)
    assert torch.allclose(space.behaviour(b).norm(dim=-1), torch.ones(5))
    assert torch.allclose(space.score(b, r), (space.behaviour(b) * space.rationale(r)).sum(-1))


def test_retrieval_metrics_by_hand():
    eye = torch.eye(3)
    assert retrieval_metrics(eye, eye) == {"recall@1": 1.0, "recall@10": 1.0, "mrr": 1.0,
                                           "candidates": 3}
    swapped = eye[[1, 0, 2]]
    m = retrieval_metrics(eye, swapped)  # rows 0, 1 find their own rationale second
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["mrr"] == pytest.approx((0.5 + 0.5 + 1) / 3)


def test_behaviour_text_format():
    assert behaviour_text(["A", "B"], "C") == "[CONTEXT] History: A; B [CHOSEN_ITEM] C"


@pytest.fixture(scope="module")
def demo_space(tmp_path_factory):
    cfg = load_config(None, ["data.name=demo"])
    ds = prepare(cfg.data, quiet=True)
    split, _ = training_split(ds, cfg.data)
    pairs = thought_pairs(ds, split, template_table(ds, split))
    small = Pairs(pairs.users[:300], pairs.behaviours[:300], pairs.rationales[:300])
    out = tmp_path_factory.mktemp("ts") / "space"
    metrics = fit_thought_space(small, ThoughtSpaceConfig(dim=32, hidden=64), out, epochs=4,
                                progress=False)
    return ds, split, out, metrics


def test_fit_saves_selects_on_held_out_and_reloads(demo_space):
    _, _, out, metrics = demo_space
    assert metrics["valid_pairs"] == 30 and metrics["train_pairs"] == 270
    assert 1 <= metrics["best_epoch"] <= 4
    best = max(h["mrr"] for h in metrics["history"])
    assert metrics["valid_retrieval"]["mrr"] == pytest.approx(best, abs=1e-6)
    assert metrics["valid_retrieval"]["recall@10"] > 10 / 30  # better than chance
    space = load_thought_space(out)
    assert space.cfg.dim == 32 and not space.training
    saved = json.loads((out / "thought_space.json").read_text())
    assert saved["config"]["temperature"] == 0.05


def test_a_checkpointed_run_resumes_to_the_weights_of_one_never_stopped(demo_space, tmp_path):
    ds, split, _, _ = demo_space
    pairs = thought_pairs(ds, split, template_table(ds, split))
    small = Pairs(pairs.users[:200], pairs.behaviours[:200], pairs.rationales[:200])
    cfg = dict(dim=16, hidden=32)
    whole = fit_thought_space(small, ThoughtSpaceConfig(**cfg), tmp_path / "whole", epochs=4,
                              progress=False, run_dir=tmp_path / "whole.run")
    run = tmp_path / "space.run"
    fit_thought_space(small, ThoughtSpaceConfig(**cfg), tmp_path / "a", epochs=2,
                      progress=False, run_dir=run)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1  # 0-based: epochs 0 and 1 are saved
    resumed = fit_thought_space(small, ThoughtSpaceConfig(**cfg), tmp_path / "b", epochs=4,
                                progress=False, run_dir=run)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    trained = (run / "logs" / "version_1" / "metrics.csv").read_text().splitlines()
    header = trained[0].split(",")
    epochs = {row.split(",")[header.index("epoch")] for row in trained[1:]}
    assert epochs == {"2", "3"}, "the rerun should train only epochs 3 and 4 (0-based 2, 3)"
    assert resumed["history"] == whole["history"]
    assert resumed["valid_retrieval"] == whole["valid_retrieval"]


def test_load_refuses_a_folder_that_is_not_a_thought_space(tmp_path):
    with pytest.raises(RankprefError, match="not a rankpref artifact"):
        load_thought_space(tmp_path)
    (tmp_path / "thought_space.safetensors").write_bytes(b"x")
    (tmp_path / "thought_space.json").write_text("{not json")
    with pytest.raises(RankprefError, match="corrupt"):
        load_thought_space(tmp_path)


def test_too_few_pairs_is_an_error(demo_space):
    ds, split, _, _ = demo_space
    with pytest.raises(RankprefError, match="at least 20"):
        thought_pairs(ds, split, template_table(ds, split).head(5))


class FakeSLM:
    """Returns, in turn, a thought naming the chosen item and two off-topic ones."""

    name = "fake"
    model_id = "fake-slm"

    def __init__(self):
        self.calls = 0

    def generate(self, batch, metas=None):
        out = []
        for _, chosen in metas:
            self.calls += 1
            pick = self.calls % 3
            if pick == 0:
                text = f"They keep buying things like {chosen.title} for their routine"
            elif pick == 1:
                text = "The weather was sunny and the train arrived late today"
            else:
                text = "Numbers and colours of cars parked outside the old station"
            out.append(json.dumps({"rationale": text}))
        return out


def test_tot_keeps_the_chain_the_thought_space_scores_best(demo_space, tmp_path):
    ds, split, out, _ = demo_space
    space = load_thought_space(out)
    encoder = TextEncoder(None, progress=False)
    examples, _ = training_examples(split, ds.vocab)
    info = ItemInfo(ds)
    behaviours = user_behaviour_texts(ds, split)
    settings = ToTSettings(depth=2, branching=3, beam=2)
    slm = FakeSLM()
    results = refine(examples[:3], info, slm, space, encoder, behaviours, settings)
    # depth 1: 1 chain x 3 samples; depth 2: 2 beam chains x 3 samples, per user
    assert slm.calls == 3 * (3 + 2 * 3)
    for ex, res in zip(examples[:3], results):
        assert info.title[ex.chosen] in res["rationale"]
        with torch.no_grad():
            b = space.behaviour(torch.from_numpy(encoder.encode([behaviours[ex.user_id]])))
            r = space.rationale(torch.from_numpy(encoder.encode([res["rationale"]])))
        assert res["score"] == pytest.approx(float((b * r).sum()), abs=1e-5)
    store = RationaleStore(tmp_path / "r.sqlite")
    report = refine_into_store("demo", examples[:5], info, ds.vocab, FakeSLM(), space, encoder,
                               behaviours, settings, store, group=2, progress=False)
    assert report["refined"] == 5 and report["failed"] == 0
    rows = store.rows(dataset="demo")
    assert {r["method"] for r in rows} == {"tot"}
    assert all(r["prompt_version"] == "pulse-v1-tot-d2b3w2" and r["score"] is not None
               for r in rows)
    again = refine_into_store("demo", examples[:5], info, ds.vocab, FakeSLM(), space, encoder,
                              behaviours, settings, store, progress=False)
    assert again["already_cached"] == 5 and again["refined"] == 0


def test_tot_settings_are_validated():
    with pytest.raises(ValueError):
        ToTSettings(depth=0)


@pytest.mark.slow
def test_finetuned_backbone_is_trained_saved_and_used(demo_space, tmp_path):
    from rankpref.tasks.next_item.thought_space import load_thought_space

    ds, split, _, _ = demo_space
    pairs = thought_pairs(ds, split, template_table(ds, split))
    small = Pairs(pairs.users[:48], pairs.behaviours[:48], pairs.rationales[:48])
    out = tmp_path / "ft"
    metrics = fit_thought_space(small, ThoughtSpaceConfig(dim=16, hidden=32,
                                                          finetune_backbone=True),
                                out, epochs=1, batch_size=16, lr=1e-2, progress=False)
    assert metrics["finetune_backbone"] and (out / "backbone").is_dir()
    assert not list(out.rglob("*.bin")) and list((out / "backbone").rglob("*.safetensors"))
    space = load_thought_space(out)
    assert space.cfg.backbone == str(out / "backbone")
    tuned = TextEncoder(space.cfg.backbone, cache_dir=None, progress=False)
    base = TextEncoder(None, cache_dir=None, progress=False)
    text = [pairs.rationales[0]]
    assert not torch.allclose(torch.from_numpy(tuned.encode(text)),
                              torch.from_numpy(base.encode(text)))
