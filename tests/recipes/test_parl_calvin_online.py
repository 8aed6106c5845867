"""Online PA-RL in PA-RL's CALVIN setting through the real CLI: tiny OpenVLA, a tiny on-disk CALVIN dataset
(offline, labelled with subtasks completed − 4), one online round in the 4-task CALVIN env."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.recipes._cli import run_cli

GAMMA = 0.9
STEPS = 10      # online.calvin.max_steps
ARGS = ["policy=random", "critic.checkpoint=fresh",
        "data.kind=calvin", "data.reward=parl", f"data.gamma={GAMMA}",
        "model.unnorm_key=calvin", "critic.privileged_state=false", "critic.hidden_dims=[16]",
        "critic.instruction_dim=4", "critic.image_size=32", "critic.image_feature_dim=8", "parl.num_samples=2", "parl.cache_states=6",
        "parl.offline_refreshes=1", "parl.distill_steps_per_refresh=1", "parl.critic_steps_per_refresh=1",
        "online.env=calvin_parl", "online.calvin.image_size=32", f"online.calvin.max_steps={STEPS}",
        "online.rounds=1", "online.episodes_per_round=2", "online.distill_steps_per_round=2",
        "online.critic_steps_per_round=2", "objective.num_samples=2", "objective.cql_n_actions=2",
        "action_optimizer.top_k=2", "action_optimizer.num_steps=1", "policy_optim.batch_size=2",
        "critic_optim.batch_size=4", "run.log_every=1", "run.progress=false", "run.threads=1"]


@pytest.mark.calvin_assets
def test_parl_collects_calvin_parl_episodes_into_the_online_replay_and_logs_them(tmp_path):
    from vla_parl.data import ReplayBuffer
    from vla_parl.data.synthetic import write_tiny_calvin
    from vla_parl.envs.calvin.tasks import PARL_INSTRUCTION

    data, run = write_tiny_calvin(tmp_path / "calvin"), tmp_path / "run"
    proc, _ = run_cli("run", "parl", "--output-dir", str(run), f"data.path={data}",
                      f"data.store_dir={tmp_path / 'stores'}", *ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]

    online = ReplayBuffer(run / "replay" / "online", gamma=GAMMA, readonly=True)
    assert online.num_episodes == 2
    for eid in online.episode_ids:
        ep = online.episode(eid)
        assert ep["obs"]["image"].shape == (STEPS + 1, 32, 32, 3) and ep["obs"]["image"].dtype == np.uint8
        assert set(ep["obs"]) == {"image", "proprio"} and ep["obs"]["proprio"].shape == (STEPS + 1, 15)
        # proprio is robot_obs: reset puts the arm at scene D's initial joints (robot_obs[7:14])
        np.testing.assert_allclose(ep["obs"]["proprio"][0, 7:14], [-1.21779, 1.03988, 2.11978, -2.34205, -0.87016,
                                                                  1.64119, 0.55345], atol=2e-3)
        assert ep["action"].shape == (STEPS, 7) and np.abs(ep["action"]).max() <= 1.0   # normalised
        # the random tiny policy completes no subtask in 10 steps: reward = 0 − 4 at every step, not terminal
        assert ep["reward"].tolist() == [-4.0] * STEPS and not ep["meta"]["terminal"]
        # a simulated episode cut by the time limit: the plain truncated sum, −4·(1 − γ^(T−t))/(1 − γ)
        np.testing.assert_allclose(ep["mc_return"], -4 * (1 - GAMMA ** np.arange(STEPS, 0, -1)) / (1 - GAMMA),
                                   rtol=1e-5)
        assert ep["meta"]["instruction"] == PARL_INSTRUCTION
    online.close()
    # the offline windows are labelled against the reset state too: in the second window (frames 12..26) the
    # slider, the lightbulb and the drawer complete one after another; the third starts with all three done
    (store,) = [p for p in (tmp_path / "stores").iterdir() if p.is_dir()]   # the dataset's shared offline store
    offline = ReplayBuffer(store, gamma=GAMMA, readonly=True)
    rewards = np.concatenate([offline.episode(e)["reward"] for e in offline.episode_ids])
    assert set(rewards.tolist()) == {-4.0, -3.0, -2.0, -1.0}
    offline.close()

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    collect = [r for r in records if "online/collect_success" in r]
    assert len(collect) == 1 and collect[0]["round"] == 0
    assert collect[0]["online/collect_success"] == 0.0 and collect[0]["online/episodes"] == 2.0
    assert collect[0]["online/collect_return"] == -4.0 * STEPS and collect[0]["online/collect_length"] == STEPS
    assert collect[0]["online/collect_subtasks"] == 0.0 and collect[0]["online/collect_rate/turn_on_led"] == 0.0
    # after collecting: critic steps on mixed offline/online batches, then distillation
    assert sum(r.get("phase") == "online" and "critic/loss" in r for r in records) == 2
    assert max(r["step"] for r in records if "policy/distill_loss" in r) == 1 + 2
    assert (run / "final" / "model" / "config.json").is_file()


@pytest.mark.calvin_assets
def test_online_images_must_match_the_offline_images(tmp_path):
    from vla_parl.data.synthetic import write_tiny_calvin

    data = write_tiny_calvin(tmp_path / "calvin")
    args = [a for a in ARGS if not a.startswith("online.calvin.image_size")]   # default 200 vs the data's 32
    proc, _ = run_cli("run", "parl", "--output-dir", str(tmp_path / "run"), f"data.path={data}", *args)
    assert proc.returncode == 2
    assert "set online.calvin.image_size=32" in proc.stderr, proc.stderr[-2000:]
