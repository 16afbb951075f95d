"""Config of listwise ranking runs: data, model, loss, lists, train, eval.

The ``model`` section is ``{name, **params}`` checked against the registered scorer's own
dataclass config (``mlp``: :class:`rankpref.models.scorer.ScorerConfig`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rankpref.config import (FieldProblems, Strict, TrainConfig, check_model_params, load,
                             validate_as)
import rankpref.losses  # noqa: F401  (registers the built-in losses)
import rankpref.models  # noqa: F401  (registers the built-in models)
from rankpref.registry import LOSSES, MODELS

TASK = "rank"
METRICS = ("kendall_tau", "spearman")


class RankDataConfig(Strict):
    name: str = Field("emobank", description="emobank, wine-red, wine-white (full shared data "
                      "when present, else the shipped slice), *-slice, or a table path")
    target: str | None = Field(None, description="label column (built-ins: V / quality)")
    text_column: str | None = None
    feature_columns: list[str] | None = None
    embeddings: str | None = Field(None, description=".npy/.parquet, one row per table row")
    split_column: str | None = None
    id_column: str | None = None
    rater_column: str | None = None
    std_column: str | None = None
    split_seed: int = 0
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)
    text_model: str | None = Field(None, description="sentence-transformers model; default "
                                   "the bundled all-MiniLM-L6-v2")
    audio_column: str | None = Field(None, description="column of audio file paths "
                                     "(relative to the table)")
    audio_features: str = Field("eGeMAPSv02", description="eGeMAPSv02, ComParE_2016 "
                                "(openSMILE functionals) or a Hugging Face audio model folder")
    image_column: str | None = Field(None, description="column of image file paths")
    image_model: str | None = Field(None, description="Hugging Face image model folder "
                                    "(needed with image_column)")
    min_clip_seconds: float = Field(0.5, gt=0, description="shorter clips are refused")
    allow_outside_paths: bool = Field(False, description="let file paths leave the table's "
                                      "folder tree")
    max_tokens: int = Field(64, ge=2, description="tokens per text for a scorer that "
                            "fine-tunes its encoder (model.name=finetune)")
    cache_dir: str = ".cache/rankpref"
    standardize: bool = True

    @model_validator(mode="after")
    def _media(self):
        problems = []
        if self.audio_column and self.image_column:
            problems.append(("audio_column", "give audio_column or image_column, not both"))
        if self.image_column and not self.image_model:
            problems.append(("image_model", "image_column needs image_model, a local model "
                             "folder (no image weights ship offline)"))
        if problems:
            raise FieldProblems(problems)
        return self


class RankModelSection(BaseModel):
    """``name`` (a registered scorer) and that scorer's own settings."""

    model_config = ConfigDict(extra="allow")

    name: str = "mlp"

    @model_validator(mode="before")
    @classmethod
    def _params(cls, tree: Any):
        if isinstance(tree, dict):
            tree = {"name": "mlp", **tree}
        return check_model_params(MODELS, TASK, tree)

    def params(self) -> dict:
        return dict(self.__pydantic_extra__ or {})


class RankLossConfig(Strict):
    name: str = Field("ranklist", description="a registered listwise loss: ranknet, listnet, "
                      "listmle, approxndcg, lambdaloss, ranklist, or mse (pointwise)")
    # RankList options (ignored by the other losses)
    pairs: Literal["local", "nonlocal", "skip"] = "nonlocal"
    skips: list[int] | None = None
    margin: float = Field(0.0, ge=0, description="W: minimum label gap for a pair to count")
    approx: Literal["exact", "lse"] = "exact"
    normalize: bool = True
    curriculum_every: int | None = Field(None, ge=1, description="one more skip distance "
                                         "every N epochs; null = all distances from the start")
    curriculum_start: int = Field(1, ge=1)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in LOSSES.names("listwise"):
            raise ValueError(f"unknown listwise loss {value!r}; choose one of "
                             f"{', '.join(LOSSES.names('listwise'))}")
        return value

    @model_validator(mode="after")
    def _skips(self):
        if self.name == "ranklist" and self.pairs == "skip" and not self.skips:
            raise FieldProblems([("skips", "pairs=skip needs the skip distances, e.g. "
                                           "[1, 2, 4]")])
        return self


class RankListsConfig(Strict):
    list_size: int = Field(32, ge=2)
    margin: float = Field(0.0, ge=0, description="sample only lists whose neighbours differ "
                          "by at least this")
    lists_per_epoch: int | None = Field(None, ge=1, description="default: train items / "
                                        "list size, and at least min_steps batches")
    min_steps: int = Field(8, ge=1, description="optimiser steps per epoch at least (a small "
                           "pool would otherwise get one step an epoch)")
    per_rater: bool = Field(True, description="lists within one rater when rater ids exist")


class RankTrainConfig(TrainConfig):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(16, ge=1, description="lists per step")
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(8, ge=1, description="epochs without a better valid eval.monitor")
    seed: int = 0
    progress: bool = False


class RankEvalConfig(Strict):
    margins: list[float] = Field([0.0], description="ranking accuracy at these label margins")
    ndcg_k: list[int] = [10]
    list_size: int = Field(32, ge=2, description="size of the seeded test lists for NDCG@k")
    monitor: Literal["kendall_tau", "spearman"] = Field(
        "kendall_tau", description="valid metric that selects the epoch")
    protocol: Literal["auto", "split", "kfold"] = Field(
        "auto", description="split: one train/valid/test split; kfold: k-fold cross-"
        "validation over every item; auto: kfold when the train split has fewer than "
        "kfold_below items and the table has no split column of its own")
    folds: int = Field(5, ge=3, description="k of kfold")
    kfold_below: int = Field(300, ge=0)
    baseline: bool = Field(True, description="also fit ridge regression on the same "
                           "features and report it beside the model")


class RankConfig(Strict):
    data: RankDataConfig = RankDataConfig()
    model: RankModelSection = RankModelSection()
    loss: RankLossConfig = RankLossConfig()
    lists: RankListsConfig = RankListsConfig()
    train: RankTrainConfig = RankTrainConfig()
    eval: RankEvalConfig = RankEvalConfig()
    output_dir: str | None = None

    def run_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        data = Path(self.data.name).stem
        target = self.data.target or "default"
        return Path("runs") / f"rank-{data}-{target}-{self.loss.name}"

    def identity(self) -> dict:
        """What a resumed run must share with the run it continues."""
        return {k: getattr(self, k).model_dump() for k in ("data", "model", "loss", "lists")}


def validate(tree: dict, source: str = "config") -> RankConfig:
    return validate_as(RankConfig, tree, source)


def load_config(path: str | Path | None = None,
                overrides: list[str] | None = None) -> RankConfig:
    """Defaults < YAML file < ``key.path=value`` overrides; unknown keys are errors."""
    return load(RankConfig, path, overrides)


def upgrade_legacy(tree: dict) -> dict:
    """A config from before the shared layout (``data.dev_fraction``, a model section without
    a name) in today's keys."""
    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    data = tree.setdefault("data", {})
    if "dev_fraction" in data:
        data["valid_fraction"] = data.pop("dev_fraction")
    tree.setdefault("model", {}).setdefault("name", "mlp")
    return tree
