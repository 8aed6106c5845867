"""Typed YAML configs: validation errors name the key and the fix; overrides; round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from vla_parl.config import load_config, to_yaml
from vla_parl.errors import ConfigError


@dataclass
class Optim:
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine"] = "constant"


@dataclass
class Recipe:
    dataset_dir: Path
    steps: int = 10
    optim: Optim = field(default_factory=Optim)
    seeds: list[int] = field(default_factory=lambda: [0])
    wandb: bool = False
    note: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")


def _write(tmp_path, data) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_load_with_overrides_and_round_trip(tmp_path):
    path = _write(tmp_path, {"dataset_dir": "/data", "optim": {"lr": 1}})
    cfg = load_config(Recipe, path, ["optim.lr=1e-4", "seeds=[0,1,2]", "optim.schedule=cosine", "note=hello"])
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.seeds == [0, 1, 2] and cfg.optim.schedule == "cosine" and cfg.dataset_dir == Path("/data")
    assert cfg.optim.betas == (0.9, 0.999)
    again = load_config(Recipe, _write(tmp_path, yaml.safe_load(to_yaml(cfg))))
    assert again == cfg


def test_unknown_key_names_nearest_valid_key(tmp_path):
    path = _write(tmp_path, {"dataset_dir": "/d", "optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'; did you mean 'optim.lr'\?"):
        load_config(Recipe, path)
    with pytest.raises(ConfigError, match=r"unknown config key 'stepz'; did you mean 'steps'\?"):
        load_config(Recipe, None, ["dataset_dir=/d", "stepz=3"])


@pytest.mark.parametrize("override, message", [
    ("steps=ten", r"steps: expected an integer, got str 'ten'"),
    ("steps=1.5", r"steps: expected an integer"),
    ("wandb=1", r"wandb: expected true/false"),
    ("optim.schedule=linear", r"optim.schedule: 'linear' is not one of \['constant', 'cosine'\]"),
    ("optim.betas=[0.9]", r"optim.betas: expected 2 items, got 1"),
    ("optim=3", r"optim: expected a mapping for Optim"),
    ("steps=0", r"steps must be >= 1"),
])
def test_type_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Recipe, None, ["dataset_dir=/d", override])


def test_missing_required_key_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match=r"missing required config key 'dataset_dir'"):
        load_config(Recipe, None, [])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Recipe, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Recipe, bad)
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(Recipe, None, ["dataset_dir"])
