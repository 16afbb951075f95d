"""Tests for rankpref.config (strict validation, --set overrides, YAML files), through the
next-item config, and for model sections checked against the model's own dataclass."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rankpref.config import MAX_YAML_ALIASES, parse_override, read_yaml, to_yaml
from rankpref.errors import ConfigError, RankprefError
from rankpref.tasks.next_item.config import NextItemConfig, load_config, upgrade_legacy, validate


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- defaults


def test_defaults_come_from_the_classes():
    cfg = load_config()
    assert isinstance(cfg, NextItemConfig)
    assert cfg.data.name == "demo"
    assert cfg.model.name == "sasrec" and cfg.loss.name == "ce"
    assert cfg.model.hidden == 64 and cfg.model.heads == 2  # SASRecConfig's own defaults
    assert cfg.eval.ks == [5, 10, 20]
    assert cfg.eval.protocol == "full"
    assert cfg.train.trainer.accelerator == "auto"
    assert cfg.model_dump() == NextItemConfig().model_dump()


def test_model_params_follow_the_chosen_model():
    pulse = load_config(overrides=["model.name=pulse", "model.id_dropout=0.3"])
    assert pulse.model.params()["id_dropout"] == 0.3 and pulse.model.use_text is True
    with pytest.raises(ConfigError, match=r"model\.id_dropout: unknown key for model 'sasrec'"):
        load_config(overrides=["model.id_dropout=0.3"])
    with pytest.raises(ConfigError, match=r"model\.text_dim: unknown key"):  # a size the task sets
        load_config(overrides=["model.name=pulse", "model.text_dim=8"])
    with pytest.raises(ConfigError, match=r"divisible by heads"):  # the dataclass's own check
        load_config(overrides=["model.hidden=33"])
    with pytest.raises(ConfigError, match=r"unknown model 'gru9'.*bsarec.*gru4rec.*pulse"):
        load_config(overrides=["model.name=gru9"])


def test_an_error_names_the_overrides_not_the_defaults():
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["train.epochs=0"])
    assert str(exc.value).startswith("--set:")


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = "a" if i == 1 else f"b{i - 1}"
        lines.append(f"b{i}: &b{i} [" + ", ".join([f"*{prev}"] * 10) + "]")
    path = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=f"more than {MAX_YAML_ALIASES} aliases"):
        read_yaml(path)
    few = write(tmp_path / "few.yaml", "a: &a 3\nb: *a\n")
    assert read_yaml(few) == {"a": 3, "b": 3}


def test_a_yaml_file_over_the_size_limit_is_refused_unread(tmp_path):
    from rankpref.config import MAX_YAML_BYTES, safe_load

    big = write(tmp_path / "big.yaml", "a: " + "x" * MAX_YAML_BYTES + "\n")
    with pytest.raises(ConfigError, match="big.yaml: .* bytes, more than"):
        read_yaml(big)
    with pytest.raises(Exception, match="more than"):
        safe_load("a: " + "x" * MAX_YAML_BYTES)


def test_a_config_from_before_the_shared_layout_is_upgraded():
    old = {"model": {"name": "pulse", "hidden": 32, "loss": "bce", "num_negatives": 5},
           "pulse": {"use_ids": False, "why_weight": 0.2}}
    cfg = validate(upgrade_legacy(old))
    assert cfg.loss.name == "bce" and cfg.loss.num_negatives == 5
    assert cfg.model.use_ids is False and cfg.pulse.why_weight == 0.2


def test_to_yaml_roundtrip():
    cfg = load_config(overrides=["train.epochs=3", "eval.ks=[1, 2]", "eval.monitor=mrr@2",
                                 "data.name=null",
                                 "data.format=table", "data.path=x.csv"])
    again = validate(yaml.safe_load(to_yaml(cfg)))
    assert again == cfg


def test_run_dir():
    assert load_config().run_dir() == Path("runs") / "demo-sasrec-ce"
    assert load_config(overrides=["output_dir=/tmp/x"]).run_dir() == Path("/tmp/x")


# ----------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path / "c.yaml", "bogus_section: 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "bogus_section: unknown key" in msg
    assert str(path) in msg


def test_unknown_nested_key(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  epochs: 3\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "train.learning_rate: unknown key" in str(exc.value)


def test_unknown_deeply_nested_key():
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["train.trainer.gpus=2"])
    assert "train.trainer.gpus: unknown key" in str(exc.value)


def test_unknown_key_via_set():
    with pytest.raises(ConfigError, match=r"model\.hiddn: unknown key"):
        load_config(overrides=["model.hiddn=32"])
    with pytest.raises(ConfigError, match=r"nosuch: unknown key"):
        load_config(overrides=["nosuch.a=1"])


def test_validate_direct_unknown_key():
    with pytest.raises(ConfigError, match=r"eval\.kss: unknown key"):
        validate({"eval": {"kss": [1]}}, "mine")


# ----------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize("override,field", [
    ("train.epochs=many", "train.epochs"),
    ("train.epochs=0", "train.epochs"),          # ge=1
    ("model.dropout=1.5", "model.dropout"),       # lt=1
    ("loss.name=mse", "loss.name"),               # not a registered loss
    ("eval.ks=[a, b]", "eval.ks"),
    ("train.progress=maybe", "train.progress"),
    ("data.split=random", "data.split"),
])
def test_wrong_type_names_field(override, field):
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=[override])
    assert field in str(exc.value)
    assert "unknown key" not in str(exc.value)


def test_wrong_type_in_file_names_field_and_file(tmp_path):
    path = write(tmp_path / "run.yaml", "train:\n  batch_size: [1, 2]\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "train.batch_size" in str(exc.value)
    assert str(path) in str(exc.value)


def test_section_replaced_by_scalar():
    with pytest.raises(ConfigError, match="data"):
        load_config(overrides=["data=5"])


def test_set_below_a_scalar_is_an_error():
    with pytest.raises(ConfigError, match="not a section"):
        load_config(overrides=["data.name=demo", "data.name.sub=1"])
    with pytest.raises(ConfigError, match="data.name"):
        load_config(overrides=["data.name.sub=1"])


# ----------------------------------------------------------------------------- --set parsing


@pytest.mark.parametrize("text,key,value", [
    ("train.epochs=7", "train.epochs", 7),
    ("train.lr=0.05", "train.lr", 0.05),
    ("train.lr=1.5e-3", "train.lr", 1.5e-3),
    ("model.dropout=-0.25", "model.dropout", -0.25),
    ("train.progress=false", "train.progress", False),
    ("train.resume=true", "train.resume", True),
    ("train.resume=True", "train.resume", True),
    ("eval.ks=[1, 5, 10]", "eval.ks", [1, 5, 10]),
    ("eval.ks=[]", "eval.ks", []),
    ("data.name=null", "data.name", None),
    ("data.name=", "data.name", None),
    ("data.name=~", "data.name", None),
    ("data.name=demo", "data.name", "demo"),
    ("data.path=a=b.csv", "data.path", "a=b.csv"),      # only the first '=' splits
    ("data.columns={user: u, item: i}", "data.columns", {"user": "u", "item": "i"}),
    (" train.epochs =3", "train.epochs", 3),
])
def test_parse_override(text, key, value):
    got_key, got_value = parse_override(text)
    assert got_key == key
    assert got_value == value
    assert type(got_value) is type(value)


@pytest.mark.parametrize("text", ["train.epochs", "=3", " =3"])
def test_parse_override_rejects_malformed(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(text)


def test_parse_override_rejects_invalid_yaml():
    with pytest.raises(ConfigError, match="eval.ks"):
        parse_override("eval.ks=[1, 2")


def test_overrides_apply_in_order_and_after_file(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  epochs: 5\n  lr: 0.01\n")
    cfg = load_config(path, ["train.epochs=9", "train.epochs=11", "eval.ks=[3]", "eval.monitor=ndcg@3",
                             "train.progress=false", "data.name=null"])
    assert cfg.train.epochs == 11
    assert cfg.train.lr == 0.01            # from the file
    assert cfg.train.batch_size == 128     # from the default
    assert cfg.eval.ks == [3]
    assert cfg.train.progress is False
    assert cfg.data.name is None


def test_file_merges_sections(tmp_path):
    path = write(tmp_path / "c.yaml", "model:\n  hidden: 32\n")
    cfg = load_config(path)
    assert cfg.model.hidden == 32
    assert cfg.model.blocks == 2            # the rest of the section keeps its defaults
    assert cfg.data.name == "demo"


def test_empty_file_is_the_default(tmp_path):
    assert load_config(write(tmp_path / "c.yaml", "")) == load_config()


# ----------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(path) in str(exc.value)
    assert "not found" in str(exc.value)


def test_invalid_yaml_file(tmp_path):
    path = write(tmp_path / "bad.yaml", "train: {epochs: 3\n  lr: [\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(path) in str(exc.value)
    assert "YAML" in str(exc.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_file_not_a_mapping(tmp_path, text):
    path = write(tmp_path / "list.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(path) in str(exc.value)
    assert "mapping" in str(exc.value)


@pytest.mark.parametrize("text", ["[]\n", "false\n"])
def test_falsy_non_mapping_file_is_rejected(tmp_path, text):
    path = write(tmp_path / "falsy.yaml", text)
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_binary_file(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81\x90garbage")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(path) in str(exc.value)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert str(tmp_path) in str(exc.value)


def test_config_error_is_a_rankpref_error():
    assert issubclass(ConfigError, RankprefError)
