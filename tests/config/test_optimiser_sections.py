"""Every optimiser key a recipe accepts is one the recipe reads: each recipe's optimiser section has only its
own keys, each with one default, and the keys the sections once shared without being read still load from
old YAML files, the command line and saved run configs, ignored with a warning that names what does the job."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import pytest
import yaml

from vla_parl.config import load_config, to_dict
from vla_parl.errors import ConfigError
from vla_parl.recipes._configs import (CriticOptimSection, CriticRecipeConfig, DemoRecipeConfig, OptimSection,
                                       ParlCriticOptimSection, ParlRecipeConfig, PolicyOptimSection, SFTRecipeConfig)

ROOT = Path(__file__).resolve().parents[2]
PARL = ["policy=random", "critic.checkpoint=fresh"]
# (recipe config, its optimiser section, the section's class, the recipe module that reads it as cfg.<section>.<key>)
SECTIONS = [(SFTRecipeConfig, "optim", OptimSection, "sft.py"),
            (CriticRecipeConfig, "optim", CriticOptimSection, "critic.py"),
            (ParlRecipeConfig, "critic_optim", ParlCriticOptimSection, "parl.py"),
            (ParlRecipeConfig, "policy_optim", PolicyOptimSection, "parl.py")]


@pytest.mark.parametrize("recipe, section, cls, module", SECTIONS, ids=lambda v: getattr(v, "__name__", v))
def test_every_key_of_a_recipes_optimiser_section_is_read_by_that_recipe(recipe, section, cls, module):
    assert type(getattr(recipe(), section)) is cls
    source = (ROOT / "recipes" / module).read_text()
    unread = [f.name for f in dataclasses.fields(cls) if not re.search(rf"\.{section}\.{f.name}\b", source)]
    assert unread == [], f"recipes/{module} accepts {section}.{unread} but never reads them"


def test_the_demo_hands_its_sections_to_the_recipes_that_read_them():
    demo = DemoRecipeConfig()
    assert (type(demo.sft), type(demo.critic_optim), type(demo.policy_optim)) == (
        OptimSection, CriticOptimSection, PolicyOptimSection)
    from vla_parl.recipes.demo import DemoRecipe

    run = DemoRecipe(load_config(DemoRecipeConfig, ROOT / "configs" / "demo_ci.yaml"), "unused")   # writes nothing
    critic, parl = run.critic_config(0), run.parl_config(0)
    assert critic.optim == run.cfg.critic_optim and run.sft_config(0).optim == run.cfg.sft
    assert parl.critic_optim == ParlCriticOptimSection(lr=1e-3, batch_size=8)
    assert parl.policy_optim == run.cfg.policy_optim


def test_the_demos_diffusion_policy_takes_its_own_distillation_optimiser_and_state_pool():
    from vla_parl.recipes.demo import DemoRecipe

    shared = DemoRecipe(load_config(DemoRecipeConfig, ROOT / "configs" / "demo_ci.yaml"), "unused")
    assert shared.parl_config(0, kind="diffusion").parl == shared.cfg.parl          # null: the shared pool
    run = DemoRecipe(load_config(DemoRecipeConfig, ROOT / "configs" / "demo_ci.yaml",
                                 ["parl.cache_states=64", "diffusion.parl_cache_states=16"]), "unused")
    openvla, diffusion = run.parl_config(0), run.parl_config(0, kind="diffusion")
    assert (openvla.parl.cache_states, diffusion.parl.cache_states) == (64, 16)
    assert dataclasses.replace(diffusion.parl, cache_states=64) == openvla.parl        # nothing else differs
    assert (openvla.policy_optim, diffusion.policy_optim) == (run.cfg.policy_optim, run.cfg.diffusion.policy_optim)
    with pytest.raises(ConfigError, match="parl_cache_states"):
        load_config(DemoRecipeConfig, ROOT / "configs" / "demo_ci.yaml", ["diffusion.parl_cache_states=0"])


def test_a_partly_written_section_takes_the_recipes_defaults_for_the_rest():
    assert load_config(CriticRecipeConfig, None, ["optim.steps=3"]).optim == CriticOptimSection(steps=3)
    assert CriticOptimSection() == CriticOptimSection(lr=3e-4, batch_size=64, steps=500)
    parl = load_config(ParlRecipeConfig, None, ["critic_optim.weight_decay=0.01", "policy_optim.batch_size=4"])
    assert parl.critic_optim == ParlCriticOptimSection(lr=3e-4, weight_decay=0.01, batch_size=64)
    assert parl.policy_optim == PolicyOptimSection(lr=2e-5, batch_size=4, max_grad_norm=1.0)


RETIRED = [("critic", "optim.max_grad_norm=0.5", "objective.max_grad_norm"),
           ("critic", "optim.grad_accum=2", "raise batch_size"),
           ("parl", "critic_optim.max_grad_norm=0.5", "objective.max_grad_norm"),
           ("parl", "critic_optim.steps=10", "parl.critic_steps_per_refresh"),
           ("parl", "critic_optim.grad_accum=2", "raise batch_size"),
           ("parl", "policy_optim.steps=10", "parl.distill_steps_per_refresh"),
           ("parl", "policy_optim.grad_accum=2", "raise batch_size"),
           ("demo", "critic_optim.max_grad_norm=0.5", "objective.max_grad_norm"),
           ("demo", "policy_optim.steps=10", "online.distill_steps_per_round")]
CONFIG = {"critic": (CriticRecipeConfig, "critic_tabletop", ["policy=random"]),
          "parl": (ParlRecipeConfig, "parl_tabletop", PARL), "demo": (DemoRecipeConfig, "demo_ci", [])}


@pytest.mark.parametrize("recipe, override, instead", RETIRED, ids=[r[1] for r in RETIRED])
def test_an_unread_key_on_the_command_line_is_ignored_with_a_warning_naming_what_to_use(recipe, override, instead):
    cls, name, required = CONFIG[recipe]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = load_config(cls, ROOT / "configs" / f"{name}.yaml", required)
    key = override.split("=")[0]
    with pytest.warns(FutureWarning, match=rf"config key '{re.escape(key)}' is ignored \(.*{re.escape(instead)}"):
        assert load_config(cls, ROOT / "configs" / f"{name}.yaml", [*required, override]) == plain


def test_a_run_config_saved_with_the_old_shared_section_loads_as_before(tmp_path):
    new = to_dict(load_config(ParlRecipeConfig, ROOT / "configs" / "parl_tabletop.yaml", PARL))
    old = yaml.safe_load(yaml.safe_dump(new))             # what a parl run wrote before: six keys per section
    old["policy_optim"].update(steps=0, grad_accum=1)
    old["critic_optim"].update(steps=0, grad_accum=1, max_grad_norm=1.0)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    with pytest.warns(FutureWarning) as caught:
        assert to_dict(load_config(ParlRecipeConfig, path)) == new
    assert len(caught) == 5 and all("is ignored" in str(w.message) for w in caught)


def test_a_key_no_optimiser_section_ever_had_is_still_an_error():
    with pytest.raises(ConfigError, match=r"unknown config key 'critic_optim.betas'.*Valid keys here: "
                                          r"\['batch_size', 'lr', 'weight_decay'\]"):
        load_config(ParlRecipeConfig, None, ["critic_optim.betas=[0.9,0.99]"])
