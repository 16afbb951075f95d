"""SESA runs: config, data, Lightning training, evaluation, explanations and artifacts.

The network is :class:`rankpref.models.sesa.SESA`; this module feeds it O*NET tasks
(:mod:`rankpref.data.onet`), trains it with a ranking loss (graded InfoNCE over every
occupation, or RankNet from :mod:`rankpref.losses.listwise` over sampled lists) plus a
multi-label concept loss (BCE of each text's known concepts on the pre-activations), selects
the epoch on the dev split and reports dev and test.

Artifact folder (loading never runs code)::

    model.safetensors   weights
    config.yaml         the validated SESARunConfig
    network.json        the SESAConfig of the network
    concepts.json       the concept vocabulary (names, descriptions)
    items.json          item ids, titles and texts (the ranked catalogue)
    words.json          the GRU's word list (GRU encoder only)
    metrics.json        dev/test metrics, selection, timings
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, ConfigDict, Field

from rankpref.concepts import ConceptVocabulary
from rankpref.data import onet
from rankpref.errors import ConfigError, DataError, RankprefError, UnknownIdError
from rankpref.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from rankpref.models.sesa import SESA, SESAConfig, build_word_vocab, contributions, encode_words, top_share

PADDING_VALUE = -1.0


# --------------------------------------------------------------------------- config

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SESAData(_Strict):
    name: Literal["onet", "onet-slice"] | None = Field("onet", description="onet = "
                                                        "$RANKPREF_DATA_DIR/onet_29_2; onet-slice = datasets/onet_slice; null = path")
    path: str | None = None
    task: Literal["titles", "related"] = "titles"
    dev_fraction: float | None = Field(None, gt=0, lt=1, description="null: 0.05 titles, 0.1 related")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="null: 0.1 titles, 0.2 related")
    seed: int = 0
    max_tasks: int | None = Field(None, ge=0, description="task statements in an occupation's text")


class SESAConcepts(_Strict):
    kind: Literal["categories", "examples", "both"] = "categories"
    min_occupations: int = Field(1, ge=1)


class SESAModel(_Strict):
    encoder: Literal["minilm", "gru"] = "minilm"
    text_model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model (frozen)")
    head: Literal["concepts", "latent"] = Field("concepts", description="latent = dense dual "
                                                "encoder baseline (no concepts)")
    latent_dim: int = Field(256, ge=1)
    hidden: int = Field(512, ge=2, description="encoder width (the GRU's two directions together)")
    embed_dim: int = Field(64, ge=1, description="GRU word embedding width")
    dropout: float = Field(0.1, ge=0, lt=1)
    top_k: int | None = Field(None, ge=1)
    concept_weights: bool = False
    max_query_tokens: int = Field(64, ge=1, description="GRU: longer queries are refused")
    max_doc_tokens: int = Field(64, ge=1, description="GRU: longer item texts are cut (counted)")
    word_min_count: int = Field(2, ge=1)


class SESATrain(_Strict):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    rank_loss: Literal["infonce", "ranknet"] = "infonce"
    temperature: float = Field(1.0, gt=0)
    concept_weight: float = Field(1.0, ge=0, description="weight of the concept BCE")
    negatives: Literal["all", "in_batch"] = Field("all", description="items scored per step: "
                                                  "every item, or the batch's relevant items")
    list_size: int = Field(64, ge=2, description="ranknet: items per sampled list")
    l1_weight: float = Field(0.0, ge=0, description="L1 penalty on concept activations "
                             "(mean over texts of sum_c e_c): fewer, stronger concepts")
    patience: int = Field(5, ge=1, description="epochs without a better dev ndcg@10")
    seed: int = 42
    threads: int = Field(1, ge=1)
    progress: bool = False


class SESARunConfig(_Strict):
    data: SESAData = SESAData()
    concepts: SESAConcepts = SESAConcepts()
    model: SESAModel = SESAModel()
    train: SESATrain = SESATrain()
    cache_dir: str = ".cache/rankpref"
    output_dir: str | None = None

    def run_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        data = self.data.name or Path(self.data.path or "onet").name
        return Path("runs") / f"{data}-{self.data.task}-sesa-{self.model.encoder}-{self.model.head}"


def validate_config(tree: dict, source: str = "config") -> SESARunConfig:
    from rankpref.config import validate_as

    return validate_as(SESARunConfig, tree, source, "SESA config")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SESARunConfig:
    """Defaults < YAML file < ``key.path=value`` overrides, validated (unknown keys are errors)."""
    from rankpref.config import _read_yaml, _set_dotted, parse_override

    tree = _read_yaml(Path(path)) if path is not None else {}
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return validate_config(tree, str(path) if path else "--set")


# --------------------------------------------------------------------------- data

@dataclass
class Prepared:
    """A task with its concept labels and encoder inputs, ready for training and evaluation."""

    task: onet.RankingTask
    concepts: ConceptVocabulary
    query_inputs: torch.Tensor         # [n_queries, ...] features or word ids
    item_inputs: torch.Tensor          # [n_items, ...]
    query_labels: torch.Tensor         # [n_queries, n_concepts] 0/1
    item_labels: torch.Tensor          # [n_items, n_concepts] 0/1
    query_label_train: torch.Tensor    # bool [n_queries]: supervises training
    item_label_train: torch.Tensor     # bool [n_items]
    words: list[str] | None
    stats: dict


def _task_kwargs(cfg: SESARunConfig) -> dict:
    d = cfg.data
    defaults = {"titles": (0.05, 0.1), "related": (0.1, 0.2)}[d.task]
    return dict(concept_kind=cfg.concepts.kind, seed=d.seed, max_tasks=d.max_tasks,
                dev_fraction=d.dev_fraction or defaults[0],
                test_fraction=d.test_fraction or defaults[1])


def text_encoder(cfg: SESARunConfig, progress: bool = False):
    from rankpref.text import TextEncoder

    return TextEncoder(cfg.model.text_model, cache_dir=Path(cfg.cache_dir) / "embeddings",
                       progress=progress)


def load_task(cfg: SESARunConfig) -> tuple[onet.RankingTask, ConceptVocabulary]:
    folder = onet.resolve_folder(cfg.data.name, cfg.data.path)
    occupations = onet.read_occupations(folder)
    task = onet.load_task(cfg.data.task, folder, occupations=occupations, **_task_kwargs(cfg))
    concepts = onet.concept_vocabulary(occupations, cfg.concepts.kind, cfg.concepts.min_occupations,
                                       folder=folder)
    return task, concepts


def prepare(cfg: SESARunConfig, task: onet.RankingTask | None = None,
            concepts: ConceptVocabulary | None = None, encoder=None,
            words: list[str] | None = None) -> Prepared:
    if task is None or concepts is None:
        task, concepts = load_task(cfg)
    # concept names below min_occupations are not in the vocabulary: counted, skipped
    q_lab, q_stats = concepts.multi_hot(task.query_labels, on_unknown="skip", where="query labels")
    i_lab, i_stats = concepts.multi_hot(task.item_labels, on_unknown="skip", where="item labels")
    q_has, i_has = q_lab.sum(1) > 0, i_lab.sum(1) > 0
    if task.name == "related":  # queries are occupations: held-out ones keep their labels hidden
        q_train = q_has & np.array([task.item_label_train[i] for i in task.self_item])
    else:
        q_train = q_has & np.array([s == "train" for s in task.query_split])
    i_train = i_has & task.item_label_train
    words, cut = None, 0
    if cfg.model.encoder == "minilm":
        encoder = encoder or text_encoder(cfg, progress=cfg.train.progress)
        q_in = torch.from_numpy(np.asarray(encoder.encode(task.query_texts)))
        i_in = torch.from_numpy(np.asarray(encoder.encode(task.item_texts)))
    else:
        train_q = [task.query_texts[i] for i in task.indices("train")]
        words = words or build_word_vocab(train_q + task.item_texts, cfg.model.word_min_count)
        q_in, q_cut = encode_words(task.query_texts, words, cfg.model.max_query_tokens)
        i_in, cut = encode_words(task.item_texts, words, cfg.model.max_doc_tokens)
        cut += q_cut
    stats = {**task.stats, "concepts": len(concepts), "concept_source": concepts.source,
             "query_labels": q_stats.to_json(), "item_labels": i_stats.to_json(),
             "queries_supervising_concepts": int(q_train.sum()),
             "items_supervising_concepts": int(i_train.sum()), "texts_cut": cut,
             "words": None if words is None else len(words)}
    return Prepared(task, concepts, q_in, i_in, torch.from_numpy(q_lab), torch.from_numpy(i_lab),
                    torch.from_numpy(q_train), torch.from_numpy(i_train), words, stats)


def prepare_for_artifact(art: "Artifact", encoder=None) -> Prepared:
    """The artifact's task and splits, rebuilt from its config, with its concepts and words."""
    task, _ = load_task(art.cfg)
    if task.item_ids != art.item_ids:
        raise DataError(f"the data of {art.folder} has changed: {len(task.item_ids)} items now, "
                        f"{len(art.item_ids)} when it was trained", path=art.folder)
    return prepare(art.cfg, task, art.concepts, encoder=encoder, words=art.words)


def build_network(cfg: SESARunConfig, prep: Prepared) -> SESA:
    m = cfg.model
    if m.top_k is not None and m.head == "latent":
        raise ConfigError("model.top_k applies to the concepts head only")
    net_cfg = SESAConfig(encoder="features" if m.encoder == "minilm" else "gru", head=m.head,
                         num_concepts=len(prep.concepts), latent_dim=m.latent_dim,
                         input_dim=int(prep.item_inputs.shape[1]) if m.encoder == "minilm" else 384,
                         vocab_size=len(prep.words) if prep.words else 0, embed_dim=m.embed_dim,
                         hidden=m.hidden, dropout=m.dropout, top_k=m.top_k,
                         concept_weights=m.concept_weights)
    return SESA(net_cfg)


# --------------------------------------------------------------------------- losses

def graded_info_nce(scores: torch.Tensor, labels: torch.Tensor, *, temperature: float = 1.0,
                    padding_value: float = PADDING_VALUE) -> torch.Tensor:
    """InfoNCE with graded positives over ``[batch, list_size]`` scores.

    Items whose label equals ``padding_value`` are left out of the softmax; the target
    distribution is the labels (> 0) normalised per row, so with one positive this is the
    usual InfoNCE, and with graded labels a higher grade pulls harder. Rows with no positive
    are left out; the result is the mean over the remaining rows (0 when there are none).
    """
    valid = labels != padding_value
    logits = (scores / temperature).masked_fill(~valid, float("-inf"))
    gains = torch.where(valid, labels.clamp_min(0), torch.zeros_like(labels))
    total = gains.sum(dim=1, keepdim=True)
    rows = total.squeeze(1) > 0
    if not rows.any():
        return scores.sum() * 0.0
    logp = F.log_softmax(logits[rows], dim=1)
    target = gains[rows] / total[rows]
    return -(target * logp.masked_fill(~valid[rows], 0.0)).sum(dim=1).mean()


def concept_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Multi-label BCE of the rows in ``mask`` (texts with known concepts); 0 if none."""
    if not mask.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[mask], labels[mask])


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def embed(model: SESA, inputs: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    was = model.training
    model.eval()
    out = torch.cat([model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])
    model.train(was)
    return out


def ranking_metrics(scores: torch.Tensor, relevance: torch.Tensor, exclude: torch.Tensor | None = None,
                    ks: tuple[int, ...] = (10,)) -> dict[str, float]:
    """Mean NDCG@k (graded), Recall@k and MRR (no cut-off) over query rows.

    ``exclude`` [n_q, n_items] marks items that are never ranked (the query itself).
    """
    scores = scores.to(torch.float64)
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
        relevance = relevance.masked_fill(exclude, 0)
    out = {}
    for k in ks:
        out[f"ndcg@{k}"] = float(ndcg_at_k(scores, relevance, k).mean())
        out[f"recall@{k}"] = float(recall_at_k(scores, relevance, k).mean())
    out["mrr"] = float(mrr_at_k(scores, relevance, scores.shape[1]).mean())
    return out


def micro_f1(predicted: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    tp = float((predicted & labels).sum())
    fp = float((predicted & ~labels).sum())
    fn = float((~predicted & labels).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"concept_precision": p, "concept_recall": r,
            "concept_micro_f1": 2 * p * r / (p + r) if p + r else 0.0}


@torch.no_grad()
def evaluate(model: SESA, prep: Prepared, split: str, top_items: int = 10) -> dict:
    """Full ranking of every item for the split's queries, concept prediction, top-5 shares."""
    rows = prep.task.indices(split)
    if len(rows) == 0:
        raise DataError(f"the {split} split has no queries", field="split")
    items = embed(model, prep.item_inputs)
    queries = embed(model, prep.query_inputs[torch.from_numpy(rows)])
    scores = model.score(queries, items)
    relevance = torch.from_numpy(prep.task.relevance_matrix(rows))
    exclude = torch.from_numpy(prep.task.exclude_matrix(rows))
    out = {"queries": len(rows), **ranking_metrics(scores, relevance, exclude)}
    if model.explicit:
        labels = prep.query_labels[torch.from_numpy(rows)] > 0
        has = labels.any(dim=1)
        out.update(micro_f1(queries[has] > 0, labels[has]))
        out["concept_rows"] = int(has.sum())
        top = scores.masked_fill(exclude, float("-inf")).topk(top_items, dim=1).indices
        q = queries.unsqueeze(1).expand(-1, top_items, -1).reshape(-1, queries.shape[1])
        share = top_share(q, items[top.reshape(-1)], model.weights(), k=5)
        out["top5_share"] = float(share.nanmean()) if (~share.isnan()).any() else float("nan")
        out["top5_share_pairs"] = int((~share.isnan()).sum())
        out["active_concepts_per_query"] = float((queries > 0).sum(1).to(torch.float64).mean())
    return out


# --------------------------------------------------------------------------- training

def _lightning_module(model: SESA, prep: Prepared, cfg: SESARunConfig):
    import lightning as L

    class SESAModule(L.LightningModule):
        """Wraps the network: ranking loss + concept BCE on the training queries."""

        def __init__(self):
            super().__init__()
            self.model = model
            train = prep.task.indices("train")
            self.gains = torch.from_numpy(prep.task.relevance_matrix(np.arange(len(prep.task.query_ids))))
            self.self_item = torch.tensor(prep.task.self_item)
            self.train_rows = torch.from_numpy(train)
            self.gen = torch.Generator().manual_seed(cfg.train.seed)

        def training_step(self, batch, batch_idx):
            (idx,) = batch
            t = cfg.train
            q_logits = self.model.logits(prep.query_inputs[idx])
            gains = self.gains[idx]
            if t.negatives == "all":
                item_idx = torch.arange(len(prep.task.item_ids))
            else:  # the batch's relevant items are each other's negatives
                item_idx = torch.nonzero(gains.sum(0) > 0).squeeze(1)
            d_logits = self.model.logits(prep.item_inputs[item_idx])
            scores = self.model.score(self.model.activate(q_logits), self.model.activate(d_logits))
            labels = gains[:, item_idx].clone()
            own = self.self_item[idx]
            is_self = own.view(-1, 1) == item_idx.view(1, -1)
            labels[is_self] = PADDING_VALUE
            if t.rank_loss == "infonce":
                rank = graded_info_nce(scores, labels, temperature=t.temperature)
            else:
                from rankpref.losses.listwise import ranknet_loss

                n = min(t.list_size, labels.shape[1])
                key = labels * 4 + torch.rand(labels.shape, generator=self.gen)
                key = key.masked_fill(labels == PADDING_VALUE, float("-inf"))
                pick = key.topk(n, dim=1).indices  # every positive first, then random items
                rank = ranknet_loss(scores.gather(1, pick) / t.temperature, labels.gather(1, pick),
                                    padding_value=PADDING_VALUE)
            loss = rank
            if self.model.explicit and t.concept_weight > 0:
                cq = concept_bce(q_logits, prep.query_labels[idx], prep.query_label_train[idx])
                cd = concept_bce(d_logits, prep.item_labels[item_idx], prep.item_label_train[item_idx])
                loss = loss + t.concept_weight * (cq + cd) / 2
                self.log("train/concept", (cq + cd) / 2, on_step=False, on_epoch=True,
                         batch_size=len(idx))
            if self.model.explicit and t.l1_weight > 0:
                eq, ed = self.model.activate(q_logits), self.model.activate(d_logits)
                loss = loss + t.l1_weight * (eq.sum(1).mean() + ed.sum(1).mean()) / 2
            self.log("train/rank", rank, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(idx))
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr,
                                     weight_decay=cfg.train.weight_decay)

    return SESAModule()


def _dev_selection(model: SESA, prep: Prepared, patience: int):
    from lightning.pytorch.callbacks import Callback

    class DevSelection(Callback):
        """After each epoch: dev NDCG@10; keeps the best weights; stops after ``patience``."""

        def __init__(self):
            self.history: list[dict] = []
            self.best, self.best_epoch, self.state, self.seconds = -1.0, -1, None, []
            self._t = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self._t = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.seconds.append(time.perf_counter() - self._t)
            dev = evaluate(model, prep, "dev")
            self.history.append({"epoch": trainer.current_epoch + 1, "dev_ndcg@10": dev["ndcg@10"]})
            pl_module.log("dev/ndcg@10", dev["ndcg@10"], prog_bar=True)
            if dev["ndcg@10"] > self.best:
                self.best, self.best_epoch = dev["ndcg@10"], trainer.current_epoch
                self.state = copy.deepcopy(model.state_dict())
            elif trainer.current_epoch - self.best_epoch >= patience:
                trainer.should_stop = True

    return DevSelection()


def fit(cfg: SESARunConfig, prep: Prepared | None = None, save: bool = True,
        callbacks: list | None = None) -> tuple[SESA, dict]:
    """Train with dev selection; returns the best network and its dev/test metrics.

    ``callbacks``: extra Lightning callbacks, run after the dev evaluation of each epoch.

    Writes the artifact to ``<run_dir>/model`` unless ``save`` is False.
    """
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from rankpref.settings import set_threads
    from rankpref.training import quiet_lightning

    set_threads(cfg.train.threads)
    quiet_lightning()
    L.seed_everything(cfg.train.seed, verbose=False)
    prep = prep or prepare(cfg)
    if len(prep.task.indices("dev")) == 0 or len(prep.task.indices("train")) == 0:
        raise DataError("the train and dev splits both need queries; change data.dev_fraction "
                        "or data.seed", field="data.dev_fraction")
    model = build_network(cfg, prep)
    module = _lightning_module(model, prep, cfg)
    loader = DataLoader(TensorDataset(module.train_rows), batch_size=cfg.train.batch_size,
                        shuffle=True, generator=torch.Generator().manual_seed(cfg.train.seed))
    selection = _dev_selection(model, prep, cfg.train.patience)
    trainer = L.Trainer(max_epochs=cfg.train.epochs, accelerator="cpu", devices=1, logger=False,
                        callbacks=[selection, *(callbacks or [])], enable_checkpointing=False,
                        enable_progress_bar=cfg.train.progress, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0)
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    train_seconds = time.perf_counter() - started
    model.load_state_dict(selection.state)
    model.eval()
    metrics = {
        "dataset": f"onet/{cfg.data.name or cfg.data.path}", "task": cfg.data.task,
        "model": f"sesa-{cfg.model.encoder}" if model.explicit else f"dual-{cfg.model.encoder}",
        "head": cfg.model.head, "loss": cfg.train.rank_loss,
        "selected_on": "dev ndcg@10", "best_epoch": selection.best_epoch + 1,
        "epochs_run": len(selection.history), "history": selection.history,
        "seconds_per_epoch": round(float(np.mean(selection.seconds)), 2) if selection.seconds else None,
        "train_seconds": round(train_seconds, 1), "threads": cfg.train.threads,
        "dev": evaluate(model, prep, "dev"), "test": evaluate(model, prep, "test"),
        "data": prep.stats,
    }
    if save:
        save_artifact(cfg.run_dir() / "model", model, cfg, prep, metrics)
    return model, metrics


# --------------------------------------------------------------------------- artifacts

ARTIFACT_FILES = ("model.safetensors", "config.yaml", "network.json", "concepts.json", "items.json",
                  "metrics.json")


def save_artifact(folder: str | Path, model: SESA, cfg: SESARunConfig, prep: Prepared,
                  metrics: dict) -> Path:
    from safetensors.torch import save_file

    from rankpref.io import atomic_dir

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
                                         encoding="utf-8")
        (tmp / "network.json").write_text(json.dumps(dataclasses.asdict(model.cfg), indent=2))
        (tmp / "concepts.json").write_text(json.dumps(prep.concepts.to_json()), encoding="utf-8")
        t = prep.task
        (tmp / "items.json").write_text(json.dumps({"ids": t.item_ids, "titles": t.item_titles,
                                                    "texts": t.item_texts}), encoding="utf-8")
        if prep.words is not None:
            (tmp / "words.json").write_text(json.dumps(prep.words), encoding="utf-8")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return folder


@dataclass
class Artifact:
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


def resolve_artifact_dir(path: str | Path) -> Path:
    path = Path(path)
    for folder in (path, path / "model"):
        if (folder / "model.safetensors").exists() and (folder / "network.json").exists():
            return folder
    raise RankprefError(f"{path}: not a SESA artifact (no model.safetensors + network.json); "
                        "pass the folder that `rankpref sesa fit` wrote")


def load_artifact(path: str | Path) -> Artifact:
    from safetensors.torch import load_file

    folder = resolve_artifact_dir(path)
    missing = [f for f in ARTIFACT_FILES if not (folder / f).exists()]
    if missing:
        raise RankprefError(f"{folder}: incomplete SESA artifact, missing {', '.join(missing)}")
    try:
        cfg = validate_config(yaml.safe_load((folder / "config.yaml").read_text("utf-8")) or {},
                              str(folder / "config.yaml"))
        net = SESAConfig(**json.loads((folder / "network.json").read_text("utf-8")))
        concepts = ConceptVocabulary.from_json(json.loads((folder / "concepts.json").read_text("utf-8")),
                                               str(folder / "concepts.json"))
        items = json.loads((folder / "items.json").read_text("utf-8"))
        words = (json.loads((folder / "words.json").read_text("utf-8"))
                 if (folder / "words.json").exists() else None)
        metrics = json.loads((folder / "metrics.json").read_text("utf-8"))
    except (ValueError, TypeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RankprefError(f"{folder}: corrupt SESA artifact metadata ({exc})") from None
    model = SESA(net)
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except Exception as exc:  # safetensors and shape errors
        raise RankprefError(f"{folder / 'model.safetensors'}: unreadable weights ({exc})") from None
    model.eval()
    if net.head == "concepts" and net.num_concepts != len(concepts):
        raise RankprefError(f"{folder}: {net.num_concepts} concept outputs but "
                            f"{len(concepts)} concepts in concepts.json")
    return Artifact(folder, model, cfg, concepts, items["ids"], items["titles"], items["texts"],
                    words, metrics)


def encode_texts(art: Artifact, texts: list[str], *, queries: bool, encoder=None) -> torch.Tensor:
    """Encoder inputs for raw texts; a query longer than the encoder's limit is an error."""
    m = art.cfg.model
    if m.encoder == "gru":
        ids, _ = encode_words(texts, art.words, m.max_query_tokens if queries else m.max_doc_tokens,
                              on_long="error" if queries else "truncate",
                              where="query" if queries else "items")
        return ids
    encoder = encoder or text_encoder(art.cfg)
    if queries:
        tok = encoder.model.tokenizer
        limit = int(encoder.model.max_seq_length)
        for n, text in enumerate(texts):
            length = len(tok(text, add_special_tokens=True)["input_ids"])
            if length > limit:
                raise DataError(f"{length} tokens, the text encoder reads at most {limit} "
                                f"(query {text[:60]!r})", path="query", line=n + 1, field="text")
    return torch.from_numpy(np.asarray(encoder.encode(texts)))


def item_vectors(art: Artifact, encoder=None) -> torch.Tensor:
    """[n_items, dims] embeddings of the artifact's catalogue (concept activations for SESA)."""
    return embed(art.model, encode_texts(art, art.item_texts, queries=False, encoder=encoder))


@torch.no_grad()
def explain(art: Artifact, query: str, item_id: str, top: int = 10, encoder=None) -> dict:
    """The score of ``item_id`` for ``query`` and the concepts behind it.

    Contributions ``w_c e_c(q) e_c(d)`` sum exactly (to float tolerance) to ``score``.
    """
    if not art.model.explicit:
        raise RankprefError(f"{art.folder}: a latent dual encoder has no concepts to explain")
    if not query.strip():
        raise DataError("the query is empty", path="query", field="text")
    i = art.item_index(item_id)
    q = embed(art.model, encode_texts(art, [query], queries=True, encoder=encoder))[0]
    d = embed(art.model, encode_texts(art, [art.item_texts[i]], queries=False, encoder=encoder))[0]
    w = art.model.weights()
    contrib = contributions(q, d, w)
    score = float(art.model.score(q[None], d[None])[0, 0])
    order = torch.argsort(contrib, descending=True)
    total = float(contrib.sum())
    rows = []
    for c in order[:top].tolist():
        if contrib[c] <= 0:
            break
        rows.append({"concept": art.concepts.names[c], "contribution": float(contrib[c]),
                     "share": float(contrib[c]) / total if total > 0 else 0.0,
                     "query": float(q[c]), "item": float(d[c]),
                     "weight": 1.0 if w is None else float(w[c])})
    return {"query": query, "item": item_id, "title": art.item_titles[i], "score": score,
            "sum_of_contributions": total, "active_query_concepts": int((q > 0).sum()),
            "active_shared_concepts": int((contrib > 0).sum()), "top": rows}


def query_vectors(art: Artifact, texts: list[str], encoder=None) -> torch.Tensor:
    """[n, dims] query embeddings, weighted by the per-concept weights when the model has them,
    so that an inner-product index over :func:`item_vectors` returns the model's own scores."""
    q = embed(art.model, encode_texts(art, texts, queries=True, encoder=encoder))
    w = art.model.weights()
    return q if w is None else q * w.detach()


def build_index(art: Artifact, factory: str = "Flat", encoder=None):
    """A :class:`rankpref.index.ItemIndex` (inner product) over the catalogue's vectors."""
    from rankpref.index import ItemIndex

    vectors = item_vectors(art, encoder).numpy().astype(np.float32)
    meta = {"model": art.metrics.get("model", "sesa"), "artifact": str(art.folder),
            "space": "concepts" if art.model.explicit else "latent",
            "query_side": "rankpref.sesa.query_vectors (weights applied to queries)"}
    if art.model.explicit:
        meta["concepts"] = len(art.concepts)
    return ItemIndex.build(list(art.item_ids), vectors, factory=factory, metric="ip", metadata=meta)


@torch.no_grad()
def search(art: Artifact, query: str, k: int = 10, encoder=None) -> list[dict]:
    """The top ``k`` items for a query text, with scores."""
    q = embed(art.model, encode_texts(art, [query], queries=True, encoder=encoder))
    scores = art.model.score(q, item_vectors(art, encoder))[0]
    top = scores.topk(min(k, len(scores)))
    return [{"item": art.item_ids[i], "title": art.item_titles[i], "score": float(s)}
            for s, i in zip(top.values.tolist(), top.indices.tolist())]
