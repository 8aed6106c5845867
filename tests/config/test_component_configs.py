"""One config per component: the recipes' critic, objective, operator and LoRA sections are the library's
configs, and keys that moved or were retired keep working (with a warning) from YAML files, the command line
and saved run configs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

from vla_parl.config import from_dict, load_config, to_dict
from vla_parl.critic import CriticConfig
from vla_parl.errors import ConfigError
from vla_parl.models.openvla.configuration_lora import LoraSettings
from vla_parl.parl import CriticUpdateConfig, ImprovementConfig
from vla_parl.recipes._configs import DataSection, DemoRecipeConfig, ParlRecipeConfig
from vla_parl.recipes._configs import RECIPE_CONFIGS as RECIPES

PARL = ["policy=random", "critic.checkpoint=fresh"]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_recipe_sections_are_the_library_configs():
    cfg = load_config(ParlRecipeConfig, CONFIGS / "parl_tabletop.yaml", PARL)
    assert type(cfg.action_optimizer) is ImprovementConfig and type(cfg.objective) is CriticUpdateConfig
    assert type(cfg.critic) is CriticConfig and type(cfg.lora) is LoraSettings
    # the file's settings reach the library objects as they are: no copy in between to drop a field
    assert cfg.action_optimizer == ImprovementConfig(num_samples=16, choice="argmax", top_k=4, num_steps=10,
                                                     step_size=0.05, action_mask="except_last")
    assert cfg.objective == CriticUpdateConfig(objective="calql", cql_alpha=2.0, cql_n_actions=4, num_samples=8,
                                               polyak_tau=0.01)
    # one default per knob: a recipe that does not set a section gets the library's defaults
    assert RECIPES["critic"]().objective == CriticUpdateConfig()
    assert RECIPES["parl"]().action_optimizer == ImprovementConfig()
    assert RECIPES["parl"]().critic == CriticConfig() and RECIPES["sft"]().lora == LoraSettings()


def test_moved_parl_keys_keep_working_on_the_command_line_and_override_the_file():
    with pytest.warns(FutureWarning) as caught:
        cfg = load_config(ParlRecipeConfig, CONFIGS / "parl_tabletop.yaml",
                          [*PARL, "parl.num_samples=12", "parl.choice=softmax"])
    assert [str(w.message).split(":")[0] for w in caught] == [
        "config key 'parl.num_samples' has moved to 'action_optimizer.num_samples'",
        "config key 'parl.choice' has moved to 'action_optimizer.choice'"]
    assert cfg.action_optimizer.num_samples == 12 and cfg.action_optimizer.choice == "softmax"
    assert "num_samples" not in to_dict(cfg)["parl"]
    with pytest.warns(FutureWarning, match="'parl.choice' has moved"):
        demo = load_config(DemoRecipeConfig, CONFIGS / "demo_ci.yaml", ["parl.choice=softmax"])
    assert demo.action_optimizer.choice == "softmax" and demo.action_optimizer.num_samples == 2


def test_an_old_config_file_or_saved_run_config_loads_as_before(tmp_path):
    new = to_dict(load_config(ParlRecipeConfig, CONFIGS / "parl_tabletop.yaml", PARL))
    old = json.loads(json.dumps(new))                     # the layout written before the keys moved
    old["parl"]["num_samples"] = old["action_optimizer"].pop("num_samples")
    old["parl"]["choice"] = old["action_optimizer"].pop("choice")
    old["data"]["privileged_state"] = True
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    with pytest.warns(FutureWarning):
        assert to_dict(load_config(ParlRecipeConfig, path)) == new
    with pytest.warns(FutureWarning):                      # the command line still wins over the file
        assert load_config(ParlRecipeConfig, path, ["action_optimizer.num_samples=3"]).action_optimizer.num_samples == 3
    old["action_optimizer"]["num_samples"] = 5             # both spellings in one file, disagreeing
    path.write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match="'parl.num_samples' is the old name of 'action_optimizer.num_samples'"):
        load_config(ParlRecipeConfig, path)


def test_data_privileged_state_is_ignored_with_a_warning_that_says_where_the_setting_is():
    with pytest.warns(FutureWarning, match=r"'data.privileged_state' is ignored .*critic.privileged_state"):
        cfg = load_config(ParlRecipeConfig, CONFIGS / "parl_tabletop.yaml", [*PARL, "data.privileged_state=false"])
    assert "privileged_state" not in to_dict(cfg)["data"] and cfg.critic.privileged_state is True
    with pytest.warns(FutureWarning, match="'privileged_state' is ignored"):
        assert from_dict(DataSection, {"privileged_state": False}) == DataSection()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # the built-in configs use none of the old keys
        for name in ("parl_tabletop", "demo", "critic_tabletop"):
            path = CONFIGS / f"{name}.yaml"
            recipe = yaml.safe_load(path.read_text())["recipe"]
            load_config(RECIPES[recipe], path, PARL if recipe != "demo" else [])


def test_critic_section_gets_its_shapes_when_built_and_saves_what_it_reads(tmp_path):
    from vla_parl.critic import QCritic

    section = CriticConfig(hidden_dims=[8], instruction_dim=4, privileged_state=False)
    config = section.with_shapes(action_dim=3, vocab_size=50, proprio_dim=2, state_dim=4)
    assert (config.action_dim, config.vocab_size, config.proprio_dim, config.state_dim) == (3, 50, 2, 0)
    critic = QCritic(config)
    critic.save(tmp_path / "critic")
    saved = json.loads((tmp_path / "critic" / "config.json").read_text())["config"]
    assert saved["instruction"] and saved["proprio"] and not saved["privileged_state"]
    assert QCritic.load(tmp_path / "critic").config == critic.config
    # a critic saved before the booleans existed still loads, and says what it reads
    old = {k: v for k, v in saved.items() if k not in ("checkpoint", "instruction", "proprio", "privileged_state")}
    assert QCritic(CriticConfig(**old)).config == critic.config
    with pytest.raises(ConfigError, match="critic.action_dim=7, but the policy and data give 3"):
        CriticConfig(action_dim=7).with_shapes(action_dim=3, vocab_size=50, proprio_dim=2, state_dim=4)
    with pytest.raises(ConfigError, match="the critic reads nothing"):
        CriticConfig(instruction=False).with_shapes(action_dim=3, vocab_size=50, proprio_dim=0, state_dim=0)
    with pytest.raises(ConfigError, match="action_dim must be >= 1"):
        QCritic(CriticConfig())
