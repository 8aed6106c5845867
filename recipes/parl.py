"""PA-RL: offline policy improvement, then online fine-tuning with a replay buffer and an env loop.

    vla-parl run parl --config parl_tabletop --output-dir runs/parl policy=runs/sft/final/model \\
        critic.checkpoint=runs/critic/final/critic
    accelerate launch --config_file <configs/accelerate/fsdp.yaml> -m vla_parl.recipes.parl ...   # FSDP2 (also CPU)

One *refresh* (offline) or *round* (online) is PA-RL's loop with the official candidate cache:
  1. (online) collect `episodes_per_round` episodes into the online replay buffer, acting as PA-RL does with the
     improvement operator over the current policy's samples (`online.collect_with=operator`; `policy`: its samples);
  2. draw a pool of transitions (online: half offline data, half online replay) and sample N candidates
     per state from the current policy (`CandidateCache`: s, and s' when the critic trains);
  3. critic steps (`CriticUpdate`, Cal-QL by default) on the pool;
  4. distillation steps (`PolicyUpdate`): a*(s) = the operator's choice among the top-k locally optimised
     candidates, the dataset action in place of the worst kept one (official), θ ← θ − lr ∇ CE(π_θ(·|s),
     tokens(a*(s))) — the policy class's own supervised loss on a*(s): CE for OpenVLA, ε-MSE for a diffusion
     policy, NLL for a Gaussian one (`policy=DIR` of a policy.type sft run).
A round takes `online.critic_steps_per_round` / `distill_steps_per_round` steps, or with
`online.updates_per_env_step` = u (official: 1) u × its env steps of each. The optimiser states of
`parl.reset_at_switch` (official: the critic's) are reset at the offline→online switch, and the online rounds
train the critic at `online.critic_lr` when it is set. (The official code distils only online: set
parl.distill_steps_per_refresh=0 for that; ours may distil offline too.) Output: `<run>/final/model` (LoRA merged,
`OpenVLA.from_pretrained`-loadable), `<run>/final/critic`; checkpoints after every refresh/round hold the
policy weights, both optimisers, the critic, the replay position and all RNG states.
With W processes (DDP or FSDP2, `vla_parl.training.parallel`) every rank holds the same pool: the ranks
sample the candidates of their share of its states (per-state seeds) and all-gather them; the critic is
replicated (same critic batch on every rank); a distillation step is one global batch of
`policy_optim.batch_size × W` states whose a*(s) every rank computes, each distilling its own rows.
Online episodes are collected where `online.env` says, through a `vla_parl.rollout` env adapter: `tabletop`
(the built-in simulator, with data.kind=tabletop) or `calvin_parl` (PA-RL's 4-task CALVIN setting on our
CALVIN scene, with data.kind=calvin and data.reward=parl) or `robot`: episodes robots finished through the
policy server (`vla-parl serve --episodes DIR`), read by `vla_parl.rollout.RobotEpisodes`. A robot round waits
for `online.robot.episodes_per_round` new episodes, trains on them, saves its checkpoint, then publishes the
policy as `<online.robot.publish_dir>/v<round>` (`PolicyPublisher`) for the server to swap in; the server
episode ids each round consumed are in the checkpoint, so `--resume` never counts one twice and publishes a
round's version only if the kill came between its checkpoint and its publishing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vla_parl.config.schema import to_yaml
from vla_parl.recipes._configs import ParlRecipeConfig, critic_source, policy_source
from vla_parl.parl.candidate_cache import CandidateCache
from vla_parl.training.builders import (as_policy, build_critic, build_model, instruction_tokenizer, is_openvla,
                                        load_start_policy, make_accelerator, resume_and_open_logger)
from vla_parl.training.checkpointing import CheckpointManager, rng_state, set_rng_state
from vla_parl.training.data import (batch_to_observation, episodes_to_buffer, load_episodes,
                                     open_offline_data)
from vla_parl.training.parallel import (all_gather_batch, broadcast_generator, check_global_batch, export_policy,
                                        load_policy_state, local_rows, mean_over_ranks, prepare_policy,
                                        prepare_replicated, refresh_candidates, save_policy_state)
from vla_parl.training.optimizers import adam, adamw
from vla_parl.utils.files import atomic_write_text

__all__ = ["ParlRecipe", "main"]


class ParlRecipe:
    def __init__(self, cfg: ParlRecipeConfig, run_dir: str | Path, *, resume: bool = False, policy_model: Any = None,
                 critic: Any = None, episodes: list[dict[str, Any]] | None = None,
                 on_stage_end: Callable[[str, Any], None] | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.policy_model = policy_model
        self.initial_critic = critic
        self._episodes = episodes
        self.on_stage_end = on_stage_end       # called with ("offline" | "online", policy) when a stage ends
        self.step = 0                          # distillation steps so far
        self.refresh = 0                       # offline refreshes done
        self.round = 0                         # online rounds done
        self.last_stats: dict[str, float] = {}  # the latest critic / distillation stats (progress bar)
        self.critic_step = 0                   # critic updates so far (the step of the critic's metric rows)
        self.collected_steps = 0               # env steps of the latest online round (online.updates_per_env_step)
        # online.env=robot, per round done: {"episodes": server episode ids consumed, "metrics": its manifest's}
        self.robot_rounds: list[dict[str, Any]] = []

    # ---- setup: accelerator → policy (+LoRA) → data → critic → optimisers → update steps → resume ---------------
    def setup(self) -> None:
        from vla_parl.data import ReplayBuffer
        from vla_parl.parl import CriticUpdate, PolicyUpdate

        cfg = self.cfg
        self.env_adapter = self._env_adapter() if cfg.online.rounds > 0 else None   # fails fast on missing assets
        self.accelerator = make_accelerator(cfg.run)
        main = self.accelerator.is_main_process
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", to_yaml(cfg))
        torch.manual_seed(cfg.run.seed)
        # an OpenVLA (model:, lora:), or the diffusion / Gaussian policy a policy.type=... sft run saved
        model = self.policy_model or load_start_policy(cfg.model, policy_source(cfg.policy),
                                                       device=self.accelerator.device)
        self.openvla = is_openvla(model)
        if not self.openvla:
            self._check_bc_policy_launch()
        if cfg.lora.enabled and self.openvla:
            from vla_parl.models.openvla.lora import apply_lora

            apply_lora(model, cfg.lora)
        else:
            model.requires_grad_(True)
        self.policy = as_policy(model, cfg.model.unnorm_key)
        self.normalizer = model.action_normalizer(cfg.model.unnorm_key)
        episodes, self._episodes = self._episodes, None
        self.offline = open_offline_data(   # tabletop: <run>/data/offline; a dataset on disk: its shared store
            self.accelerator, cfg.data, self.run_dir,
            lambda: episodes if episodes is not None else load_episodes(cfg.data, progress=cfg.run.progress),
            self.normalizer.normalize, cfg.data.gamma, progress=cfg.run.progress, episodes_given=episodes is not None)
        rank = self.accelerator.process_index
        online_dir = "online" if self.accelerator.num_processes == 1 else f"online_rank{rank}"
        self.online = ReplayBuffer(self.run_dir / "replay" / online_dir, gamma=cfg.data.gamma)
        example = self.offline.sample(1, np.random.default_rng(0))["obs"]
        self.critic = self.initial_critic or build_critic(
            critic_source(cfg.critic), instruction_tokenizer(model), action_dim=self.policy.action_dim,
            proprio_dim=example["proprio"].shape[1] if "proprio" in example else 0,
            state_dim=example["state"].shape[1] if "state" in example else 0)
        self.use_state = bool(self.critic.inputs()["state_dim"])   # what the critic reads (a checkpoint decides)
        self._check_online_matches_offline(example)
        critic_optimizer = self._critic_optimizer()
        self.core = model
        self.model, self.policy_optimizer, self.sharded = prepare_policy(self.accelerator, model, cfg.run,
                                                                         self._policy_optimizer)
        self.critic, self.critic_optimizer = prepare_replicated(self.accelerator, self.critic, critic_optimizer)
        world = self.accelerator.num_processes
        self.per_state_seeds = world > 1 if cfg.parl.per_state_seeds is None else cfg.parl.per_state_seeds
        if world > 1 and not self.per_state_seeds:
            from vla_parl.errors import ConfigError

            raise ConfigError("parl.per_state_seeds=false needs one process: with several, each rank samples its "
                              "share of the states with per-state seeds (set it to null or true)")
        if self.per_state_seeds and self.openvla:
            # distillation runs through the DDP wrapper (gradients all-reduced); sampling gathers FSDP2 shards
            from vla_parl.distributed import DistributedOpenVLAPolicy

            self.policy = DistributedOpenVLAPolicy(model, wrapper=self.model if self.model is not model else None,
                                                   unnorm_key=cfg.model.unnorm_key)
        self.generator = torch.Generator().manual_seed(cfg.run.seed)
        # the same generator on every rank: all draw the same pool and global batches, each trains its rows
        self.rng = np.random.default_rng([cfg.run.seed, 0])
        num_cached = max(cfg.action_optimizer.num_samples, cfg.objective.num_samples)
        self.cache = CandidateCache(self.policy, num_cached)
        self.critic_update = CriticUpdate(self.critic, self.critic_optimizer, self.cache, cfg.action_optimizer,
                                          cfg.objective, gamma=cfg.data.gamma, accelerator=self.accelerator,
                                          generator=self.generator)
        self.policy_update = PolicyUpdate(self.cache, self.policy_optimizer, self.critic, cfg.action_optimizer,
                                          max_grad_norm=cfg.policy_optim.max_grad_norm,
                                          accelerator=self.accelerator, generator=self.generator)
        self.policy_update.critic.improvement = self.policy_update.operator.config.to_dict()   # saved with it
        self.checkpoints = CheckpointManager(self.run_dir, keep=cfg.run.keep_checkpoints)
        self.logger, _ = resume_and_open_logger(self.accelerator, self.checkpoints, self.run_dir, cfg, self.resume,
                                               self._load_checkpoint)

    def _check_bc_policy_launch(self) -> None:
        """A diffusion / Gaussian start policy: one process (its distillation does not run through a DDP wrapper)
        and a simulator to collect in (the policy server serves OpenVLA)."""
        from vla_parl.errors import ConfigError

        if self.accelerator.num_processes > 1:
            raise ConfigError(f"policy={self.cfg.policy} is a diffusion/Gaussian policy, whose PA-RL runs in one "
                              f"process: launch `vla-parl run parl` without accelerate/torchrun")
        if self.cfg.online.rounds and self.cfg.online.env == "robot":
            raise ConfigError("online.env=robot publishes OpenVLA policies to the policy server; a diffusion/Gaussian "
                              "policy collects in a simulator: set online.env=tabletop or calvin_parl")

    def _critic_optimizer(self) -> torch.optim.Optimizer:
        critic = self.accelerator.unwrap_model(self.critic)
        return adam(critic.trainable_parameters(), lr=self.cfg.critic_optim.lr,
                    weight_decay=self.cfg.critic_optim.weight_decay)

    def _policy_optimizer(self) -> torch.optim.Optimizer:
        return adamw(self.policy.trainable_parameters(), lr=self.cfg.policy_optim.lr,
                     weight_decay=self.cfg.policy_optim.weight_decay)

    # ---- one refresh / round -------------------------------------------------------------------------------------
    def _pool(self, size: int) -> dict[str, Any]:
        from vla_parl.data import sample_mixed

        fraction = self.cfg.online.online_fraction
        if self.accelerator.num_processes == 1:
            if self.round == 0 and len(self.online) == 0:
                return self.offline.sample(size, self.rng)
            return sample_mixed(self.offline, self.online, size, online_fraction=fraction, rng=self.rng)
        if self.refresh < self.cfg.parl.offline_refreshes:
            return self.offline.sample(size, self.rng)        # offline: the same pool on every rank
        # online: each rank's replay holds its own episodes, so every rank draws its share of the pool from
        # its data, and the pool is all-gathered: again the same on every rank
        rows = local_rows(size)
        seed = int(self.rng.integers(2**31))
        part = sample_mixed(self.offline, self.online, rows.stop - rows.start, online_fraction=fraction,
                            rng=np.random.default_rng([seed, self.accelerator.process_index]))
        return all_gather_batch(part)

    def improve(self, critic_steps: int, distill_steps: int) -> None:
        """Sample a pool, cache the current policy's candidates, then critic and distillation steps."""
        from vla_parl.parl import TransitionBatch
        from vla_parl.policy.base import Observation

        cfg = self.cfg
        P = cfg.parl.cache_states
        pool = self._pool(P)
        obs = batch_to_observation(pool["obs"], use_state=self.use_state)
        states = obs
        if critic_steps > 0:
            nxt = batch_to_observation(pool["next_obs"], use_state=self.use_state)
            states = Observation(images=torch.cat([obs.images, nxt.images]),
                                 instructions=obs.instructions + nxt.instructions,
                                 proprio=None if obs.proprio is None else torch.cat([obs.proprio, nxt.proprio]),
                                 state=None if obs.state is None else torch.cat([obs.state, nxt.state]))
        refresh_candidates(self.cache, states, generator=self.generator, per_state_seeds=self.per_state_seeds)
        for _ in range(critic_steps):     # replicated: every rank takes the same critic batch (DDP keeps them equal)
            rows = self.rng.integers(0, P, size=cfg.critic_optim.batch_size)
            batch = TransitionBatch(obs=self.cache.batch(rows), actions=torch.from_numpy(pool["action"][rows]),
                                    rewards=torch.from_numpy(pool["reward"][rows]),
                                    next_obs=self.cache.batch(rows + P), dones=torch.from_numpy(pool["done"][rows]),
                                    mc_returns=(torch.from_numpy(pool["mc_return"][rows])
                                                if "mc_return" in pool else None))
            stats = self.critic_update.step(batch)
            self.last_stats.update(stats)
            self.critic_step += 1
            self.logger.log(self.critic_step, stats,
                            phase="offline" if self.refresh < cfg.parl.offline_refreshes else "online")
        global_batch = cfg.policy_optim.batch_size * self.accelerator.num_processes
        for i in range(distill_steps):
            rows = self.rng.integers(0, P, size=global_batch)
            stats = mean_over_ranks(self.policy_update.step(self.cache.batch(rows), local_rows(global_batch),
                                                            data_actions=torch.from_numpy(pool["action"][rows])))
            self.last_stats.update(stats)
            self.step += 1
            if self.step % cfg.run.log_every == 0 or i == distill_steps - 1:
                self.logger.log(self.step, stats, phase="parl")

    # ---- online collection ---------------------------------------------------------------------------------------
    def _env_adapter(self) -> Any:
        """The environment of `online.env` behind `vla_parl.rollout.run_episodes`."""
        from vla_parl.rollout import CalvinParlAdapter, RobotEpisodes, TabletopAdapter

        cfg = self.cfg
        if cfg.online.env == "robot":
            return RobotEpisodes(cfg.online.robot.replay_dir, poll_s=cfg.online.robot.poll_s)
        if cfg.online.env == "calvin_parl":
            c = cfg.online.calvin
            return CalvinParlAdapter(c.assets, image_size=c.image_size, max_steps=c.max_steps,
                                     instruction=c.instruction)
        return TabletopAdapter(cfg.data.task, image_size=cfg.data.env_image_size,
                               max_episode_steps=cfg.data.max_episode_steps, targets=cfg.data.targets)

    def _check_online_matches_offline(self, example: dict[str, Any]) -> None:
        """Online and offline transitions share batches: same observation keys and shapes."""
        if self.env_adapter is None:
            return
        offline = {k: tuple(v.shape[1:]) for k, v in example.items() if k != "instruction"}
        if self.cfg.online.env == "robot":   # robot episodes are converted to these shapes; they carry a `state`
            if not self.critic.inputs()["state_dim"]:     # only where the critic reads one
                offline.pop("state", None)
            self.env_adapter.match_offline(offline)
            return
        online = {k: tuple(v) for k, v in self.env_adapter.obs_shapes.items()}
        if offline != online:
            from vla_parl.errors import ConfigError

            fix = ""
            if self.cfg.online.env == "calvin_parl" and "image" in offline and offline["image"] != online["image"]:
                fix = f": set online.calvin.image_size={offline['image'][0]}"
            raise ConfigError(f"online.env={self.cfg.online.env} episodes would hold {online} but the offline data "
                              f"holds {offline}; they are mixed in one batch{fix}")

    def collect(self) -> dict[str, float]:
        """One round of online episodes: with PA-RL's improvement operator over the current policy's samples
        (online.collect_with=operator, the official way; its choice rule is action_optimizer.choice), or with
        one policy sample per step (collect_with=policy); OpenVLA samples at online.explore_temperature."""
        from vla_parl.rollout import run_episodes

        cfg = self.cfg
        if cfg.online.env == "robot":
            return self._collect_from_robot()
        # every rank collects its own episodes (rank r draws reset seeds r·10⁷ apart from rank 0's)
        seed = (cfg.run.seed * 100_000 + 50_000 + self.round * cfg.online.episodes_per_round
                + self.accelerator.process_index * 10_000_000)
        sampler = self.policy
        if self.openvla:
            from vla_parl.policy.openvla import OpenVLAPolicy, SamplingSettings

            sampler = OpenVLAPolicy(self.policy.model, SamplingSettings(temperature=cfg.online.explore_temperature),
                                    unnorm_key=self.policy.unnorm_key)
        if cfg.online.collect_with == "operator":
            act = self.policy_update.operator.with_policy(sampler).actor(self.generator)
        else:
            from vla_parl.eval.tabletop import sample_actor

            act = sample_actor(sampler, generator=self.generator)
        result = run_episodes(self.env_adapter, act, episodes=cfg.online.episodes_per_round, seed=seed,
                              unnormalize=self.policy.unnormalize, keep_trajectories=True)
        episodes_to_buffer(result.trajectories, self.online, lambda a: a, cfg.data.gamma)
        self.collected_steps = int(sum(len(t["action"]) for t in result.trajectories))
        return {"online/collect_success": result.success_rate, "online/episodes": float(self.online.num_episodes),
                "online/env_steps": float(self.collected_steps),
                **{f"online/{k}": v for k, v in self.env_adapter.metrics(result).items()}}

    def _collect_from_robot(self) -> dict[str, float]:
        """Wait for this round's new robot episodes, copy them into the online replay and return their collection
        metrics. Every rank polls the store itself (no collective held open for as long as robots take) and
        takes the same episodes: the oldest not yet consumed, in an append-only store."""
        from vla_parl.rollout import robot_metrics

        cfg, robot, main = self.cfg, self.env_adapter, self.accelerator.is_main_process
        count = cfg.online.robot.episodes_per_round or cfg.online.episodes_per_round
        consumed = {episode for done in self.robot_rounds for episode in done["episodes"]}
        chosen = robot.wait(count, consumed, timeout_s=cfg.online.robot.wait_timeout_s,
                            progress=cfg.run.progress and main, hint=self._robot_hint() if main else None)
        episodes = robot.load(chosen)
        trajectories = [robot.to_learner(e) for e in episodes]
        self.collected_steps = int(sum(len(t["action"]) for t in trajectories))
        episodes_to_buffer(trajectories, self.online, lambda a: a, cfg.data.gamma)
        stats = {**{f"online/{k}": v for k, v in robot_metrics(episodes).items()},
                 "online/episodes": float(self.online.num_episodes)}
        self.robot_rounds.append({"episodes": [e.server_id for e in episodes], "metrics": dict(stats)})
        return stats

    def _robot_hint(self) -> str:
        """What to run so that robot episodes arrive (shown while waiting)."""
        robot = self.cfg.online.robot
        return (f"serve the policy with `vla-parl serve --checkpoint {self.cfg.policy} --episodes {robot.replay_dir} "
                f"--policy-updates {self.publish_dir}` and let robots act through it and end their episodes "
                f"(`vla-parl robot sim --url http://HOST:PORT --task reach --episodes N` simulates some)")

    @property
    def publish_dir(self) -> Path:
        return Path(self.cfg.online.robot.publish_dir or self.run_dir / "published")

    def publish(self) -> Path:
        """`<publish_dir>/v<round>`: the policy of the round just saved, for the policy server to swap in, with
        the round's episodes and metrics in its manifest. Every rank calls it; the main process writes."""
        from vla_parl.training.publish import PolicyPublisher

        cfg = self.cfg
        done = self.robot_rounds[self.round - 1]
        policy = Path(cfg.policy).expanduser()
        kind = cfg.online.robot.publish or ("adapter" if cfg.lora.enabled else "model")
        return PolicyPublisher(self.publish_dir).publish(
            self.model, version=self.round, kind=kind,
            base=str(policy.resolve()) if policy.exists() else cfg.policy, episodes=done["episodes"],
            metrics=done["metrics"], sharded=self.sharded, is_main=self.accelerator.is_main_process,
            rebuild_base=self._rebuild_base())

    def _catch_up_publishing(self) -> None:
        """Before the robot rounds: refuse a publish folder holding versions of another run, and publish the last
        saved round's version when a kill came between its checkpoint and its publishing."""
        from vla_parl.errors import ConfigError
        from vla_parl.training.publish import PolicyPublisher

        published = PolicyPublisher(self.publish_dir).latest_version()
        if published > self.round:
            raise ConfigError(f"{self.publish_dir} already holds v{published}, but this run has done {self.round} "
                              f"robot rounds: those versions come from another run; set online.robot.publish_dir to "
                              f"an empty folder (the policy server's --policy-updates DIR)")
        if published < self.round:
            self.publish()

    # ---- train ---------------------------------------------------------------------------------------------------
    def train(self) -> None:
        from tqdm import tqdm

        from vla_parl.distributed import gathered_weights

        cfg = self.cfg
        robot = cfg.online.env == "robot" and cfg.online.rounds > 0
        if robot:
            self._catch_up_publishing()     # first: a publish folder of another run fails before any work
        total = cfg.parl.offline_refreshes + cfg.online.rounds
        stop_after = cfg.run.stop_after
        bar = tqdm(total=total, initial=self.refresh + self.round, desc="pa-rl", leave=False,
                   disable=not (cfg.run.progress and self.accelerator.is_main_process))
        while self.refresh < cfg.parl.offline_refreshes:
            if stop_after is not None and self.refresh + self.round >= stop_after:
                return
            bar.set_description("pa-rl offline")
            self.improve(cfg.parl.critic_steps_per_refresh, cfg.parl.distill_steps_per_refresh)
            self.refresh += 1
            bar.update(1)
            _show_losses(bar, self.last_stats)
            if self.refresh == cfg.parl.offline_refreshes:
                self._reset_at_switch()
            self.save_checkpoint()
            if self.refresh == cfg.parl.offline_refreshes and self.on_stage_end is not None:
                self.on_stage_end("offline", self.policy)
        if cfg.online.rounds and cfg.online.critic_lr is not None:
            for group in self.critic_optimizer.param_groups:
                group["lr"] = cfg.online.critic_lr
        while self.round < cfg.online.rounds:
            if stop_after is not None and self.refresh + self.round >= stop_after:
                return
            bar.set_description("pa-rl online")
            if robot:                           # no weights held while waiting for robots
                stats = self.collect()
            else:
                with gathered_weights(self.core):   # FSDP2: gathered once per round (episode lengths differ per rank)
                    stats = self.collect()
                broadcast_generator(self.generator)   # the ranks' episodes drew from it differently
            self.logger.log(self.round + 1, stats, phase="collect", round=self.round)
            self.improve(*self._round_updates())
            self.round += 1
            bar.update(1)
            _show_losses(bar, self.last_stats)
            if robot:
                self.robot_rounds[-1]["metrics"].update(self.last_stats)
            self.save_checkpoint()
            if robot:
                self.publish()
        bar.close()
        if cfg.online.rounds and self.on_stage_end is not None:
            self.on_stage_end("online", self.policy)

    def _round_updates(self) -> tuple[int, int]:
        """(critic steps, distillation steps) of this online round: fixed counts, or with
        online.updates_per_env_step = u, u × the env steps the round collected for both (official PA-RL: u = 1)."""
        online = self.cfg.online
        if online.updates_per_env_step is None:
            return online.critic_steps_per_round, online.distill_steps_per_round
        steps = self.collected_steps
        if self.accelerator.num_processes > 1 and self.cfg.online.env != "robot":
            # every rank collected its own episodes and takes the same number of steps: the global count
            steps = int(mean_over_ranks({"n": float(steps)})["n"] * self.accelerator.num_processes)
        updates = max(1, round(online.updates_per_env_step * steps))
        return updates, updates

    def _reset_at_switch(self) -> None:
        """At the offline→online switch, fresh optimiser states for parl.reset_at_switch (official PA-RL: the
        critic's; its Adam moments from offline training would otherwise steer the first online updates)."""
        if "critic" in self.cfg.parl.reset_at_switch:
            self.critic_optimizer.load_state_dict(self._critic_optimizer().state_dict())
        if "policy" in self.cfg.parl.reset_at_switch:
            self.policy_optimizer.load_state_dict(self._policy_optimizer().state_dict())

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Every rank: the policy's trainable weights + optimizer as DCP shards (`policy/`); the main rank the
        replicated critic, its optimizer, the replay position and RNG states. Published atomically."""
        critic = self.accelerator.unwrap_model(self.critic)

        def write(tmp: Path) -> None:
            critic.save(tmp / "critic")
            torch.save(self.critic_optimizer.state_dict(), tmp / "critic_optimizer.pt")
            (tmp / "config.yaml").write_text(to_yaml(self.cfg))

        self.checkpoints.save(self.refresh * 1000 + self.round, write,
                              {"distill_step": self.step, "critic_step": self.critic_step, "refresh": self.refresh,
                               "round": self.round,
                               "online_episodes": self.online.num_episodes, "sampler_rng": rng_state(self.rng),
                               "global_batch": self.cfg.policy_optim.batch_size * self.accelerator.num_processes,
                               "robot_rounds": self.robot_rounds},
                              extra_generators={"update": self.generator},
                              sharded=lambda tmp: save_policy_state(tmp / "policy", self.model, self.policy_optimizer))

    def _load_checkpoint(self, path: Path) -> int:
        from vla_parl.critic import QCritic

        load_policy_state(path / "policy", self.model, self.policy_optimizer)   # any world size → this one
        critic = self.accelerator.unwrap_model(self.critic)
        tokenize = critic.encoder.instruction.tokenize if critic.encoder.instruction is not None else None
        critic.load_state_dict(QCritic.load(path / "critic", tokenize=tokenize).state_dict())
        self.critic_optimizer.load_state_dict(torch.load(path / "critic_optimizer.pt", weights_only=False))
        state = self.checkpoints.load(path, extra_generators={"update": self.generator})
        set_rng_state(self.rng, state["sampler_rng"])
        self.step, self.refresh, self.round = state["distill_step"], state["refresh"], state["round"]
        self.critic_step = state.get("critic_step", 0)
        self.robot_rounds = state.get("robot_rounds", [])[:self.round]
        check_global_batch(state, self.cfg.policy_optim.batch_size * self.accelerator.num_processes,
                           "policy_optim.batch_size")
        self.online.truncate(state["online_episodes"])   # drop episodes added after it (a kill mid-round)
        return self.step

    def export(self, directory: Path | None = None) -> Path:
        """`<run>/final/model` (LoRA merged; the live model keeps its adapters), with LoRA `<run>/final/adapter`,
        and `<run>/final/critic`. Under FSDP2 rank 0 gathers only the adapters and merges them once into the
        start policy rebuilt from `policy` (see `export_policy`)."""
        directory = directory or self.run_dir / "final"
        main = self.accelerator.is_main_process
        if not self.openvla:   # one process: the policy (config, weights, statistics, manifest) and the critic
            self.policy.save(directory / "model")
            self.accelerator.unwrap_model(self.critic).save(directory / "critic")
            return directory
        export_policy(self.model, directory / "model", sharded=self.sharded, is_main=main,
                      rebuild_base=self._rebuild_base(), adapter_dir=directory / "adapter", in_place=False)
        if main:
            self.accelerator.unwrap_model(self.critic).save(directory / "critic")
            from vla_parl.models.openvla.model_card import record_run
            from vla_parl.recipes._summary import final_metrics

            record_run(directory / "model", "parl", self.cfg, final_metrics(
                self.run_dir, ("policy/distill_loss", "critic/loss", "online/collect_success", "online/episodes")))
        self.accelerator.wait_for_everyone()
        return directory

    def _rebuild_base(self) -> Callable[[], Any] | None:
        """FSDP2 export: how rank 0 rebuilds the frozen start policy to merge gathered adapters into."""
        if self.policy_model is not None:
            return None
        return lambda: build_model(self.cfg.model, source=policy_source(self.cfg.policy), device="cpu")

    def cleanup(self) -> None:
        self.logger.close()
        self.offline.close()
        self.online.close()


def _show_losses(bar: Any, stats: dict[str, float]) -> None:
    """The latest distillation and critic losses on the progress bar."""
    shown = {name: f"{stats[key]:.4f}" for name, key in (("distill", "policy/distill_loss"), ("critic", "critic/loss"))
             if key in stats}
    if shown:
        bar.set_postfix(shown, refresh=False)


def summary(recipe: ParlRecipe, wall_s: float) -> str:
    """The end-of-run summary (main rank): losses, online success, wall time, model/critic, next commands."""
    from vla_parl.recipes._summary import eval_command, print_summary

    cfg, run = recipe.cfg, recipe.run_dir
    final = run / "final"
    outputs = {"model": final / "model", **({"adapter": final / "adapter"} if cfg.lora.enabled and recipe.openvla else {}),
               "critic": final / "critic", **({"published": recipe.publish_dir} if cfg.online.env == "robot" and cfg.online.rounds else {})}
    commands = ([eval_command(cfg.data, cfg.model.unnorm_key, final / "model", run / "eval"),   # they take an OpenVLA
                 f"vla-parl serve --checkpoint {final / 'model'} --critic {final / 'critic'}"] if recipe.openvla else [])
    return print_summary("parl", run, done=recipe.refresh + recipe.round,
                         total=cfg.parl.offline_refreshes + cfg.online.rounds, unit="refreshes + rounds",
                         wall_s=wall_s, outputs=outputs,
                         metric_keys=("policy/distill_loss", "critic/loss", "online/collect_success"),
                         next_commands=commands)


def main(cfg: ParlRecipeConfig, run_dir: str | Path, resume: bool = False) -> int:
    import time

    started = time.perf_counter()
    recipe = ParlRecipe(cfg, run_dir, resume=resume)
    recipe.setup()
    recipe.train()
    if recipe.refresh >= cfg.parl.offline_refreshes and recipe.round >= cfg.online.rounds:
        recipe.export()
    recipe.cleanup()
    if recipe.accelerator.is_main_process:
        summary(recipe, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    from vla_parl.cli.run import run_module_main

    sys.exit(run_module_main("parl"))
