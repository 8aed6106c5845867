"""The parl recipe at the offline→online switch and in its online rounds (in-process, tiny model):
the optimiser states of `parl.reset_at_switch` are reset (official PA-RL: the critic's), and
`online.updates_per_env_step` ties a round's critic and distillation steps to the env steps it collected."""

from __future__ import annotations

import pytest

from tests.recipes.test_resume import PARL


def _parl(tmp_path, *overrides: str):
    from vla_parl.cli.run import load_recipe_config
    from vla_parl.recipes.parl import ParlRecipe

    cfg = load_recipe_config("parl", None, [*PARL, *overrides])
    seen: dict[str, dict[str, bool]] = {}

    def stepped(optimizer) -> bool:   # Adam moments from real updates (a DCP save initialises zero moments)
        return any(bool(s["exp_avg"].abs().sum() > 0) for s in optimizer.state_dict()["state"].values())

    def at_stage_end(stage: str, policy) -> None:   # after the switch's reset and the refresh's checkpoint
        seen[stage] = {"critic": stepped(recipe.critic_optimizer), "policy": stepped(recipe.policy_optimizer)}

    recipe = ParlRecipe(cfg, tmp_path / "run", on_stage_end=at_stage_end)
    recipe.setup()
    recipe.train()
    recipe.cleanup()
    return recipe, seen


@pytest.mark.slow
def test_the_critic_optimiser_is_reset_at_the_switch_and_a_round_takes_utd_steps(tmp_path):
    recipe, seen = _parl(tmp_path, "online.rounds=1", "online.updates_per_env_step=0.5")
    # offline: 1 critic + 2 distillation steps gave both optimisers state; the switch emptied the critic's only
    assert seen["offline"] == {"critic": False, "policy": True}
    collected = recipe.collected_steps
    assert collected >= 2          # 2 episodes of at most 5 steps
    updates = max(1, round(0.5 * collected))
    assert recipe.critic_step == 1 + updates               # offline critic step + the round's
    assert recipe.step == 2 + updates                      # offline distillation steps + the round's


@pytest.mark.slow
def test_reset_at_switch_policy_keeps_the_critic_state(tmp_path):
    _, seen = _parl(tmp_path, "online.rounds=0", "parl.reset_at_switch=[policy]")
    assert seen["offline"] == {"critic": True, "policy": False}


def test_reset_at_switch_names_its_choices():
    from vla_parl.cli.run import load_recipe_config
    from vla_parl.errors import ConfigError

    with pytest.raises(ConfigError, match="reset_at_switch"):
        load_recipe_config("parl", None, [*PARL, "parl.reset_at_switch=[critics]"])


def test_online_actor_is_the_old_name_of_collect_with():
    from vla_parl.cli.run import load_recipe_config

    with pytest.warns(FutureWarning, match="online.collect_with"):
        cfg = load_recipe_config("parl", None, [*PARL, "online.actor=policy"])
    assert cfg.online.collect_with == "policy"
    assert load_recipe_config("parl", None, PARL).online.collect_with == "operator"
