"""Run configuration: YAML files validated by pydantic (unknown keys are errors).

A run's config is the package default (``rankpref/configs/default.yaml``), then an optional
user YAML file, then ``--set a.b=value`` overrides (values parsed as YAML), in that order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rankpref.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    name: str | None = Field("demo", description="built-in dataset (demo, beauty, ml-100k, "
                             "sports, toys) or null to read `path` with `format`")
    format: Literal["recbole", "amazon2018", "amazon2023", "s3rec", "table"] | None = None
    path: str | None = None
    items_path: str | None = None
    columns: dict[str, str] | None = None
    min_user_interactions: int | None = Field(None, ge=0, description="k-core; null = dataset default")
    min_item_interactions: int | None = Field(None, ge=0)
    dedupe: Literal["user_item", "exact", "none"] = "user_item"
    split: Literal["leave_one_out", "temporal"] = "leave_one_out"
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)
    max_len: int = Field(50, ge=1)
    cache_dir: str = ".cache/rankpref"
    cold_items: float = Field(0.0, ge=0, lt=1, description="fraction of items held out of "
                              "training entirely (cold-start evaluation); 0 = none")
    cold_seed: int = 0
    train_user_fraction: float = Field(1.0, gt=0, le=1, description="train on the sequences "
                                       "of this seeded fraction of users (all are evaluated)")
    train_user_seed: int = 0


class ModelConfig(_Strict):
    name: Literal["sasrec", "pulse"] = "sasrec"
    hidden: int = Field(64, ge=2)
    blocks: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    ffn_multiplier: int = Field(4, ge=1, description="feed-forward width / hidden")
    norm: Literal["pre", "post"] = "pre"
    scale_embeddings: bool = True
    loss: Literal["ce", "bce", "sampled_softmax"] = "ce"
    num_negatives: int = Field(100, ge=1, description="negatives for sampled_softmax")


class PulseSettings(_Strict):
    """PULSE: item text + ID, next-item CE (what) + rationale alignment (why)."""

    text_model: str | None = Field(None, description="sentence-transformers model (local "
                                   "path or hub name) for item texts and rationales; null = "
                                   "the bundled all-MiniLM-L6-v2")
    use_ids: bool = True
    use_text: bool = True
    id_dropout: float = Field(0.1, ge=0, lt=1)
    rationales: str = Field("none", description="'none', 'template' (from item metadata), or "
                            "a rationale file: .parquet (rankpref rationales export) or "
                            ".sqlite (the generation cache)")
    rationale_model: str | None = Field(None, description="use only rationales written by "
                                        "this model (refused if the file has none)")
    why_weight: float = Field(0.1, ge=0, description="lambda: weight of the why (InfoNCE) loss")
    temperature: float = Field(0.1, gt=0)
    thought_space: str | None = Field(None, description="trained thought space folder; "
                                      "rationale vectors then pass through its rationale tower")
    init_from: str | None = Field(None, description="artifact to continue from (cross-domain): "
                                  "every weight whose name and shape match except the item IDs")


class TrainerConfig(_Strict):
    """Passed through to ``lightning.Trainer``."""

    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: str = "32-true"


class TrainConfig(_Strict):
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="decoupled (AdamW) weight decay")
    patience: int = Field(10, ge=1, description="epochs without a better valid ndcg@10")
    seed: int = 42
    threads: int = Field(1, ge=1, description="torch intra-op threads")
    num_workers: int = Field(0, ge=0)
    resume: bool = True
    progress: bool = True
    trainer: TrainerConfig = TrainerConfig()


class EvalConfig(_Strict):
    ks: list[int] = [5, 10, 20]
    mask_history: bool = True
    protocol: str = "full"
    monitor: str = "ndcg@10"
    seed: int = 0


class RunConfig(_Strict):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    pulse: PulseSettings = PulseSettings()
    output_dir: str | None = Field(None, description="run folder; default runs/<data>-<model>-<loss>")

    def run_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        data = self.data.name or Path(self.data.path or "data").stem
        return Path("runs") / f"{data}-{self.model.name}-{self.model.loss}"


DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value is not valid YAML: {exc}") from None
    return key, value


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def validate_as(model: type[BaseModel], tree: dict, source: str = "config",
                what: str = "config"):
    """``model.model_validate(tree)``; errors become one ConfigError naming every bad key."""
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{loc}: {msg}")
        raise ConfigError(f"{source}: invalid {what}: " + "; ".join(lines)) from None


def validate(tree: dict, source: str = "config") -> RunConfig:
    return validate_as(RunConfig, tree, source)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    tree = _read_yaml(DEFAULT_CONFIG)
    source = str(DEFAULT_CONFIG)
    if path is not None:
        tree = _merge(tree, _read_yaml(Path(path)))
        source = str(path)
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return validate(tree, source)


def apply_overrides(cfg: RunConfig, overrides: list[str], source: str = "--set") -> RunConfig:
    """A copy of ``cfg`` with ``key.path=value`` overrides applied and validated."""
    tree = cfg.model_dump(mode="json")
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return validate(tree, source)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
