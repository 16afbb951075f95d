"""Config of SESA runs: data (an O*NET ranking task), concepts, model, loss, train, eval."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from rankpref.config import Strict, TrainConfig, load, validate_as

METRICS = ("ndcg@10", "recall@10", "mrr")


class SESAData(Strict):
    name: Literal["onet", "onet-slice"] | None = Field(
        "onet", description="onet = $RANKPREF_DATA_DIR/onet_29_2; onet-slice = the shipped "
        "slice; null = path")
    path: str | None = None
    task: Literal["titles", "related"] = "titles"
    valid_fraction: float | None = Field(None, gt=0, lt=1, description="null: 0.05 titles, "
                                         "0.1 related")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="null: 0.1 titles, "
                                        "0.2 related")
    seed: int = 0
    max_tasks: int | None = Field(None, ge=0, description="task statements in an occupation's text")
    cache_dir: str = ".cache/rankpref"


class SESAConcepts(Strict):
    kind: Literal["categories", "examples", "both"] = "categories"
    min_occupations: int = Field(1, ge=1)


class SESAModel(Strict):
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


class SESALoss(Strict):
    name: Literal["infonce", "ranknet"] = Field("infonce", description="graded InfoNCE over "
                                                "the items scored, or RankNet over sampled lists")
    temperature: float = Field(1.0, gt=0)
    concept_weight: float = Field(1.0, ge=0, description="weight of the concept BCE")
    negatives: Literal["all", "in_batch"] = Field("all", description="items scored per step: "
                                                  "every item, or the batch's relevant items")
    list_size: int = Field(64, ge=2, description="ranknet: items per sampled list")
    l1_weight: float = Field(0.0, ge=0, description="L1 penalty on concept activations "
                             "(mean over texts of sum_c e_c): fewer, stronger concepts")


class SESATrain(TrainConfig):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(3e-3, gt=0)
    patience: int = Field(5, ge=1, description="epochs without a better valid eval.monitor")
    progress: bool = False


class SESAEval(Strict):
    monitor: Literal["ndcg@10", "recall@10", "mrr"] = Field(
        "ndcg@10", description="valid metric that selects the epoch")


class SESARunConfig(Strict):
    data: SESAData = SESAData()
    concepts: SESAConcepts = SESAConcepts()
    model: SESAModel = SESAModel()
    loss: SESALoss = SESALoss()
    train: SESATrain = SESATrain()
    eval: SESAEval = SESAEval()
    output_dir: str | None = None

    def run_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        data = self.data.name or Path(self.data.path or "onet").name
        return Path("runs") / f"{data}-{self.data.task}-sesa-{self.model.encoder}-{self.model.head}"

    def identity(self) -> dict:
        """What a resumed run must share with the run it continues."""
        return {k: getattr(self, k).model_dump() for k in ("data", "concepts", "model", "loss")}


def validate(tree: dict, source: str = "config") -> SESARunConfig:
    return validate_as(SESARunConfig, tree, source, "SESA config")


def load_config(path: str | Path | None = None,
                overrides: list[str] | None = None) -> SESARunConfig:
    """Defaults < YAML file < ``key.path=value`` overrides; unknown keys are errors."""
    return load(SESARunConfig, path, overrides, what="SESA config")


_LOSS_KEYS = ("temperature", "concept_weight", "negatives", "list_size", "l1_weight")


def upgrade_legacy(tree: dict) -> dict:
    """A config from before the shared layout (``train.rank_loss``, ``data.dev_fraction``, a
    top-level ``cache_dir``) in today's keys."""
    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    data, train = tree.setdefault("data", {}), tree.setdefault("train", {})
    loss = tree.setdefault("loss", {})
    if "dev_fraction" in data:
        data["valid_fraction"] = data.pop("dev_fraction")
    if "cache_dir" in tree:
        data["cache_dir"] = tree.pop("cache_dir")
    if "rank_loss" in train:
        loss["name"] = train.pop("rank_loss")
    for key in _LOSS_KEYS:
        if key in train:
            loss[key] = train.pop(key)
    return tree
