"""Config of next-item runs (SASRec, PULSE): data, model, loss, train, eval, pulse.

The ``model`` section is ``{name, **params}``: the params are the fields of the registered
model's own dataclass config (``SASRecConfig``, ``PulseConfig``), checked against it, so a new
backbone brings its settings with it and an unknown one is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rankpref.config import (FieldProblems, Strict, TrainConfig, check_model_params, load,
                             validate_as)
from rankpref.data.datasets import DatasetConfig
from rankpref.errors import ConfigError
import rankpref.losses  # noqa: F401  (registers the built-in losses)
import rankpref.models  # noqa: F401  (registers the built-in models)
from rankpref.registry import LOSSES, MODELS

TASK = "next_item"


def parse_protocol(protocol: str) -> int | None:
    """``"full"`` -> None; ``"sampled_100"`` -> 100."""
    if protocol == "full":
        return None
    if protocol.startswith("sampled_"):
        try:
            n = int(protocol.split("_", 1)[1])
        except ValueError:
            n = 0
        if n > 0:
            return n
    raise ConfigError(f"eval.protocol: unknown protocol {protocol!r}; use 'full' or 'sampled_<N>'")



class DataConfig(DatasetConfig):
    """The dataset (see :class:`rankpref.data.datasets.DatasetConfig`), its split and the
    sequences a run trains on."""

    split: Literal["leave_one_out", "temporal"] = "leave_one_out"
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)
    max_len: int = Field(50, ge=1)
    train_on: Literal["every_position", "every_prefix", "sliding"] = Field(
        "every_position", description="every_position: all positions of a window at once, "
        "causal (SASRec); every_prefix: each prefix a sample, loss on its last position "
        "(RecBole, BSARec; needed by models that are not causal); sliding: windows every "
        "data.window_stride targets, loss on their last window_stride positions")
    window_stride: int = Field(10, ge=1, description="sliding: targets between window ends "
                               "(1 = every_prefix; max_len = every_position)")
    cold_items: float = Field(0.0, ge=0, lt=1, description="fraction of items held out of "
                              "training entirely (cold-start evaluation); 0 = none")
    cold_seed: int = 0
    train_user_fraction: float = Field(1.0, gt=0, le=1, description="train on the sequences "
                                       "of this seeded fraction of users (all are evaluated)")
    train_user_seed: int = 0


class ModelSection(BaseModel):
    """``name`` (a registered next-item model) and that model's own settings."""

    model_config = ConfigDict(extra="allow")

    name: str = "sasrec"

    @model_validator(mode="before")
    @classmethod
    def _params(cls, tree: Any):
        if isinstance(tree, dict):
            tree = {"name": "sasrec", **tree}
        return check_model_params(MODELS, TASK, tree)

    def params(self) -> dict:
        """The model's settings (everything but ``name``)."""
        return dict(self.__pydantic_extra__ or {})


CE_BUDGET_BYTES = 4 << 30
"""What one training step's full-softmax logits (and their softmax and gradient) may take
before the default loss becomes sampled softmax (:func:`choose_loss`)."""
SAMPLED_NEGATIVES = 256  # eSASRec's setting for sampled softmax on Amazon data


class LossConfig(Strict):
    name: str = Field("ce", description="a registered next-item loss: ce, bce, "
                      "sampled_softmax, gbce, sampled_softmax_logq; left unset, ce becomes sampled_softmax on a catalogue "
                      "whose full softmax would not fit memory")
    num_negatives: int = Field(100, ge=1, description="negatives for losses that sample many")
    in_batch_negatives: int = Field(256, ge=1, description="sampled_softmax_logq: negatives "
                                    "drawn from the step's own targets (by popularity)")
    calibration: float = Field(0.75, ge=0, le=1, description="gbce: gSASRec's t (0 = plain "
                               "BCE, 1 = calibrated to the full softmax)")

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in LOSSES.names(TASK):
            raise ValueError(f"unknown next-item loss {value!r}; choose one of "
                             f"{', '.join(LOSSES.names(TASK))}")
        return value


class PulseSettings(Strict):
    """PULSE's inputs and why-objective: item texts, rationales and their InfoNCE."""

    text_model: str | None = Field(None, description="sentence-transformers model (local "
                                   "path or hub name) for item texts and rationales; null = "
                                   "the bundled all-MiniLM-L6-v2")
    rationales: str = Field("none", description="'none', 'template' (from item metadata), or "
                            "a rationale file: .parquet (rankpref rationales export) or "
                            ".sqlite (the generation cache)")
    rationale_model: str | None = Field(None, description="use only rationales written by "
                                        "this model (refused if the file has none)")
    why_objective: Literal["infonce", "distill"] = Field(
        "infonce", description="infonce: align the why head's reason vector with the "
        "rationale; distill: profile distillation (Severin et al., ECIR 2026), MSE between "
        "the mean-pooled states of the user's last window and a trainable projection of the "
        "rationale vector, for pulse.distill_epochs, then the recommendation loss alone")
    why_weight: float = Field(0.1, ge=0, description="lambda: weight of the why (InfoNCE) loss")
    distill_weight: float = Field(0.4, gt=0, lt=1, description="distill: a in (1 - a) L_rec "
                                  "+ a b L_distill")
    distill_balance: bool = Field(False, description="distill: b = L_rec / L_distill each step "
                                  "(not trained through), so the two terms have the same "
                                  "value, as the paper; false: b = 1")
    distill_epochs: int = Field(12, ge=1, description="distill: epochs of the first stage")
    distill_standardize: bool = Field(True, description="distill: standardise pooled states "
                                      "and projections over the batch, per dimension, before "
                                      "the MSE (false: the raw MSE of the paper, which every "
                                      "user's state can meet by being the same)")
    temperature: float = Field(0.1, gt=0)
    thought_space: str | None = Field(None, description="trained thought space folder; "
                                      "rationale vectors then pass through its rationale tower")
    init_from: str | None = Field(None, description="artifact to continue from (cross-domain): "
                                  "every weight whose name and shape match except the item IDs")


class NextItemTrain(TrainConfig):
    eval_batch_size: int = Field(1024, ge=1)


class EvalConfig(Strict):
    ks: list[int] = [5, 10, 20]
    mask_history: bool = True
    protocol: str = "full"
    monitor: str = Field("ndcg@10", description="valid metric that selects the epoch")
    seed: int = 0

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        try:
            parse_protocol(value)
        except ConfigError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return value

    @model_validator(mode="after")
    def _monitor_is_computed(self):
        name, _, k = self.monitor.partition("@")
        if name not in ("recall", "ndcg", "mrr") or not k.isdigit() or int(k) not in self.ks:
            raise FieldProblems([("monitor", f"{self.monitor!r} is not computed: use "
                                             f"recall/ndcg/mrr@k with k in ks {self.ks}")])
        return self


class NextItemConfig(Strict):
    data: DataConfig = DataConfig()
    model: ModelSection = ModelSection()
    loss: LossConfig = LossConfig()
    train: NextItemTrain = NextItemTrain()
    eval: EvalConfig = EvalConfig()
    pulse: PulseSettings = PulseSettings()
    output_dir: str | None = Field(None, description="run folder; default runs/<data>-<model>-<loss>")

    def run_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        data = self.data.name or Path(self.data.path or "data").stem
        return Path("runs") / f"{data}-{self.model.name}-{self.loss.name}"

    def identity(self) -> dict:
        """What a resumed run must share with the run it continues."""
        return {"data": self.data.model_dump(), "model": self.model.model_dump(),
                "loss": self.loss.model_dump(), "pulse": self.pulse.model_dump()}


def validate(tree: dict, source: str = "config") -> NextItemConfig:
    return validate_as(NextItemConfig, tree, source)


def load_config(path: str | Path | None = None,
                overrides: list[str] | None = None) -> NextItemConfig:
    """Defaults < YAML file < ``key.path=value`` overrides; unknown keys are errors."""
    return load(NextItemConfig, path, overrides)


def upgrade_legacy(tree: dict) -> dict:
    """A config from before the shared layout (``model.loss``, ``pulse.use_ids``, ...) in
    today's keys, so artifacts trained then still load."""
    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    model, pulse = tree.setdefault("model", {}), tree.setdefault("pulse", {})
    loss = tree.setdefault("loss", {})
    if "loss" in model:
        loss["name"] = model.pop("loss")
    if "num_negatives" in model:
        loss["num_negatives"] = model.pop("num_negatives")
    moved = ("use_ids", "use_text", "id_dropout")
    for key in moved:
        value = pulse.pop(key, None)
        if value is not None and model.get("name") == "pulse":
            model[key] = value
    return tree


def full_ce_bytes(cfg: NextItemConfig, num_items: int) -> int:
    """Float32 bytes of one step's full-softmax logits, softmax and gradient at most."""
    return cfg.train.batch_size * cfg.data.max_len * (num_items + 1) * 4 * 3


def choose_loss(cfg: NextItemConfig, num_items: int) -> tuple[NextItemConfig, str | None]:
    """The config to train with, and a line saying why, when the default loss (``ce``, not
    asked for) would need more than ``CE_BUDGET_BYTES`` a step: then ``sampled_softmax`` over
    ``SAMPLED_NEGATIVES`` uniform negatives (or ``loss.num_negatives`` when given). A loss
    the user named is kept, as is ce with cold items (sampled negatives would include them)."""
    need = full_ce_bytes(cfg, num_items)
    if ("name" in cfg.loss.model_fields_set or cfg.loss.name != "ce" or need <= CE_BUDGET_BYTES
            or cfg.data.cold_items > 0):
        return cfg, None
    negatives = (cfg.loss.num_negatives if "num_negatives" in cfg.loss.model_fields_set
                 else SAMPLED_NEGATIVES)
    loss = LossConfig(name="sampled_softmax", num_negatives=negatives)
    why = (f"loss: a full softmax over {num_items:,} items would hold about "
           f"{need / 2 ** 30:.1f} GiB a step (train.batch_size x data.max_len x items); "
           f"training with sampled_softmax over {negatives} negatives instead (set "
           "loss.name=ce to keep the full softmax)")
    return cfg.model_copy(update={"loss": loss}), why
