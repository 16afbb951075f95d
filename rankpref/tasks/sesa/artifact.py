"""SESA artifacts (kind ``sesa``), written by ``rankpref sesa fit``::

    manifest.json       kind, format version, model, what each file holds
    model.safetensors   weights
    config.yaml         the validated SESA run config
    network.json        the SESAConfig of the network
    concepts.json       the concept vocabulary (names, descriptions)
    items.json          item ids, titles and texts (the ranked catalogue)
    words.json          the GRU's word list (GRU encoder only)
    metrics.json        valid/test metrics, selection, timings

Loading reads only safetensors, YAML (safe loader) and JSON: it never runs code.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from rankpref import artifact
from rankpref.config import safe_load, to_yaml
from rankpref.data.concepts import ConceptVocabulary
from rankpref.errors import DataError, RankprefError, UnknownIdError
from rankpref.models.sesa import SESA, SESAConfig
from rankpref.registry import ARTIFACTS
from rankpref.tasks.sesa.config import SESARunConfig, upgrade_legacy, validate
from rankpref.tasks.sesa.data import TaskInputs, load_task, prepare_inputs

KIND = "sesa"
REQUIRED = ("model.safetensors", "config.yaml", "network.json", "concepts.json", "items.json",
            "metrics.json")


@dataclass
class SESAArtifact:
    folder: Path
    model: SESA
    cfg: SESARunConfig
    concepts: ConceptVocabulary
    item_ids: list[str]
    item_titles: list[str]
    item_texts: list[str]
    words: list[str] | None
    metrics: dict

    def item_index(self, item_id: str) -> int:
        try:
            return self.item_ids.index(item_id)
        except ValueError:
            raise UnknownIdError(f"item {item_id!r} is not in the artifact's catalogue "
                                 f"({len(self.item_ids)} items, e.g. {self.item_ids[0]})") from None


def save_artifact(folder: str | Path, model: SESA, cfg: SESARunConfig, prep: TaskInputs,
                  metrics: dict) -> Path:
    folder = Path(folder)
    t = prep.task
    with artifact.writer(folder, KIND, "sesa" if model.explicit else "dual-encoder") as w:
        w.weights("model.safetensors", model.state_dict())
        w.text("config.yaml", to_yaml(cfg), "the resolved SESA run config")
        w.json("network.json", dataclasses.asdict(model.cfg), "the network's SESAConfig")
        w.json("concepts.json", prep.concepts.to_json(), "the concept vocabulary")
        w.json("items.json", {"ids": t.item_ids, "titles": t.item_titles,
                              "texts": t.item_texts}, "the ranked catalogue")
        if prep.words is not None:
            w.json("words.json", prep.words, "the GRU's word list")
        w.json("metrics.json", metrics, "valid/test metrics, selection, timings")
    return folder


def load_artifact(path: str | Path, command: str | None = None) -> SESAArtifact:
    from safetensors.torch import load_file

    folder, manifest = artifact.expect(path, KIND, command)
    missing = [f for f in REQUIRED if not (folder / f).exists()]
    if missing:
        raise RankprefError(f"{folder}: incomplete SESA artifact, missing {', '.join(missing)}")
    try:
        tree = safe_load((folder / "config.yaml").read_text("utf-8")) or {}
        if manifest.inferred:
            tree = upgrade_legacy(tree if isinstance(tree, dict) else {})
        cfg = validate(tree, str(folder / "config.yaml"))
        net = SESAConfig(**json.loads((folder / "network.json").read_text("utf-8")))
        concepts = ConceptVocabulary.from_json(
            json.loads((folder / "concepts.json").read_text("utf-8")), str(folder / "concepts.json"))
        items = json.loads((folder / "items.json").read_text("utf-8"))
        words = (json.loads((folder / "words.json").read_text("utf-8"))
                 if (folder / "words.json").exists() else None)
        metrics = json.loads((folder / "metrics.json").read_text("utf-8"))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise RankprefError(f"{folder}: corrupt SESA artifact metadata ({exc})") from None
    model = SESA(net)
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except Exception as exc:  # safetensors and shape errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RankprefError(f"{folder / 'model.safetensors'}: unreadable weights ({first})") from None
    model.eval()
    if net.head == "concepts" and net.num_concepts != len(concepts):
        raise RankprefError(f"{folder}: {net.num_concepts} concept outputs but "
                            f"{len(concepts)} concepts in concepts.json")
    return SESAArtifact(folder, model, cfg, concepts, items["ids"], items["titles"],
                        items["texts"], words, metrics)


def inputs_for_artifact(art: SESAArtifact, encoder=None) -> TaskInputs:
    """The artifact's task and splits, rebuilt from its config, with its concepts and words."""
    task, _ = load_task(art.cfg)
    if task.item_ids != art.item_ids:
        raise DataError(f"the data of {art.folder} has changed: {len(task.item_ids)} items now, "
                        f"{len(art.item_ids)} when it was trained", path=art.folder)
    return prepare_inputs(art.cfg, task, art.concepts, encoder=encoder, words=art.words)


ARTIFACTS.register(KIND, load_artifact)
