"""PA-RL: offline policy improvement, then online fine-tuning with a replay buffer and an env loop.

    vla-parl run parl --config parl_tabletop --output-dir runs/parl policy=runs/sft/final/model \\
        critic.checkpoint=runs/critic/final/critic

One *refresh* (offline) or *round* (online) is PA-RL's loop with the official candidate cache:
  1. (online) collect `episodes_per_round` episodes with the current policy into the online replay buffer;
  2. draw a pool of transitions (online: half offline data, half online replay) and sample N candidates
     per state from the current policy (`CandidateCache`: s, and s' when the critic trains);
  3. critic steps (`CriticUpdate`, Cal-QL by default) on the pool;
  4. distillation steps (`PolicyUpdate`): a*(s) = argmax over top-k locally optimised candidates,
     θ ← θ − lr ∇ CE(π_θ(·|s), tokens(a*(s))).
The policy optimiser is reset at the offline→online switch. Output: `<run>/final/model` (LoRA merged,
`OpenVLA.from_pretrained`-loadable), `<run>/final/critic`; checkpoints after every refresh/round hold the
policy weights, both optimisers, the critic, the replay position and all RNG states.
Online collection needs the built-in simulator (data.kind=tabletop); for datasets set online.rounds=0.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vla_parl.config.schema import to_dict, to_yaml
from vla_parl.recipes._configs import ParlConfig
from vla_parl.training import CheckpointManager, MetricLogger
from vla_parl.training.builders import (CandidateCache, build_critic, build_model, make_accelerator, rng_state,
                                        set_rng_state, trim_metrics)
from vla_parl.training.data import (batch_to_observation, episodes_to_buffer, load_episodes,
                                     open_offline_buffer_on_ranks)

__all__ = ["ParlRecipe", "main"]


class ParlRecipe:
    def __init__(self, cfg: ParlConfig, run_dir: str | Path, *, resume: bool = False, policy_model: Any = None,
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

    # ---- setup: accelerator → policy (+LoRA) → data → critic → optimisers → update steps → resume ---------------
    def setup(self) -> None:
        from vla_parl.data import ReplayBuffer
        from vla_parl.parl import ActionOptimizer, CriticUpdate, CriticUpdateConfig, PolicyUpdate, PolicyUpdateConfig
        from vla_parl.policy.openvla import OpenVLAPolicy

        cfg = self.cfg
        if cfg.online.rounds > 0 and cfg.data.kind != "tabletop":
            from vla_parl.errors import ConfigError

            raise ConfigError("online PA-RL collects episodes in the built-in simulator: use data.kind=tabletop or "
                              "online.rounds=0 (offline PA-RL only)")
        self.accelerator = make_accelerator(cfg.run)
        main = self.accelerator.is_main_process
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(to_yaml(cfg))
        torch.manual_seed(cfg.run.seed)
        model = self.policy_model or build_model(cfg.model, source=cfg.policy, device=self.accelerator.device)
        if cfg.lora.enabled:
            from vla_parl.models.openvla.lora import LoraSettings, apply_lora

            apply_lora(model, LoraSettings(r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout,
                                           include_vision=cfg.lora.include_vision))
        else:
            model.requires_grad_(True)
        self.policy = OpenVLAPolicy(model, unnorm_key=cfg.model.unnorm_key)
        self.normalizer = model.action_normalizer(cfg.model.unnorm_key)
        episodes, self._episodes = self._episodes, None
        self.offline = open_offline_buffer_on_ranks(
            self.accelerator, self.run_dir / "data" / "offline",
            lambda: episodes if episodes is not None else load_episodes(cfg.data, progress=cfg.run.progress),
            self.normalizer.normalize, cfg.data.gamma)
        rank = self.accelerator.process_index
        online_dir = "online" if self.accelerator.num_processes == 1 else f"online_rank{rank}"
        self.online = ReplayBuffer(self.run_dir / "replay" / online_dir, gamma=cfg.data.gamma)
        example = self.offline.sample(1, np.random.default_rng(0))["obs"]
        self.use_state = cfg.critic.privileged_state
        self.critic = self.initial_critic or build_critic(
            cfg.critic, model.processor.tokenizer, action_dim=self.policy.action_dim,
            proprio_dim=example["proprio"].shape[1] if "proprio" in example else 0,
            state_dim=example["state"].shape[1] if "state" in example else 0)
        policy_optimizer = self._policy_optimizer()
        critic_optimizer = torch.optim.Adam(self.critic.trainable_parameters(), lr=cfg.critic_optim.lr)
        self.model, self.policy_optimizer, self.critic, self.critic_optimizer = self.accelerator.prepare(
            model, policy_optimizer, self.critic, critic_optimizer)
        if self.accelerator.num_processes > 1:
            # distillation runs through the DDP wrapper (gradients all-reduced); sampling gathers FSDP2 shards
            from vla_parl.distributed import DistributedOpenVLAPolicy

            self.policy = DistributedOpenVLAPolicy(model, wrapper=self.model if self.model is not model else None,
                                                   unnorm_key=cfg.model.unnorm_key)
        self.generator = torch.Generator().manual_seed(cfg.run.seed)
        self.rng = np.random.default_rng([cfg.run.seed, self.accelerator.process_index])
        num_cached = max(cfg.parl.num_samples, cfg.objective.num_samples)
        self.cache = CandidateCache(self.policy, num_cached)
        opt = cfg.action_optimizer
        self.action_optimizer = ActionOptimizer(top_k=opt.top_k, num_steps=opt.num_steps, step_size=opt.step_size,
                                                ensemble_reduce=opt.ensemble_reduce)
        obj = cfg.objective
        self.critic_update = CriticUpdate(
            self.critic, self.critic_optimizer, self.cache, self.action_optimizer,
            CriticUpdateConfig(objective=obj.objective, gamma=cfg.data.gamma, polyak_tau=obj.polyak_tau,
                               cql_alpha=obj.cql_alpha, cql_n_actions=obj.cql_n_actions, num_samples=obj.num_samples,
                               expectile=obj.expectile, max_grad_norm=obj.max_grad_norm),
            accelerator=self.accelerator, generator=self.generator)
        self.policy_update = PolicyUpdate(self.cache, self.policy_optimizer, self.critic, self.action_optimizer,
                                          PolicyUpdateConfig(num_samples=cfg.parl.num_samples, choice=cfg.parl.choice,
                                                             max_grad_norm=cfg.policy_optim.max_grad_norm),
                                          accelerator=self.accelerator, generator=self.generator)
        self.checkpoints = CheckpointManager(self.run_dir, keep=cfg.run.keep_checkpoints)
        latest = self.checkpoints.latest() if self.resume else None
        if latest is not None:
            self._load_checkpoint(latest)
            trim_metrics(self.run_dir, self.step)
        self.logger = MetricLogger(self.run_dir, wandb=cfg.run.wandb, enabled=self.accelerator.is_main_process,
                                   run_name=self.run_dir.name, config=to_dict(cfg))

    def _policy_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.policy.trainable_parameters(), lr=self.cfg.policy_optim.lr,
                                 weight_decay=self.cfg.policy_optim.weight_decay)

    # ---- one refresh / round -------------------------------------------------------------------------------------
    def _pool(self, size: int) -> dict[str, Any]:
        from vla_parl.data import sample_mixed

        if self.round == 0 and len(self.online) == 0:
            return self.offline.sample(size, self.rng)
        return sample_mixed(self.offline, self.online, size, online_fraction=self.cfg.online.online_fraction,
                            rng=self.rng)

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
        self.cache.refresh(states, generator=self.generator)
        for _ in range(critic_steps):
            rows = self.rng.integers(0, P, size=cfg.critic_optim.batch_size)
            batch = TransitionBatch(obs=self.cache.batch(rows), actions=torch.from_numpy(pool["action"][rows]),
                                    rewards=torch.from_numpy(pool["reward"][rows]),
                                    next_obs=self.cache.batch(rows + P), dones=torch.from_numpy(pool["done"][rows]),
                                    mc_returns=(torch.from_numpy(pool["mc_return"][rows])
                                                if "mc_return" in pool else None))
            stats = self.critic_update.step(batch)
            self.logger.log(self.step, stats, phase="offline" if self.refresh < cfg.parl.offline_refreshes else "online")
        for i in range(distill_steps):
            rows = self.rng.integers(0, P, size=cfg.policy_optim.batch_size)
            stats = self.policy_update.step(self.cache.batch(rows))
            self.step += 1
            if self.step % cfg.run.log_every == 0 or i == distill_steps - 1:
                self.logger.log(self.step, stats, phase="parl")

    def collect(self) -> dict[str, float]:
        """One round of online episodes with the current policy (sampled at explore_temperature)."""
        from vla_parl.eval.tabletop import evaluate_tabletop, greedy_actor

        cfg = self.cfg
        seed = cfg.run.seed * 100_000 + 50_000 + self.round * cfg.online.episodes_per_round
        result = evaluate_tabletop(greedy_actor(self.policy, cfg.online.explore_temperature, self.generator),
                                   task=cfg.data.task, episodes=cfg.online.episodes_per_round, seed=seed,
                                   unnormalize=self.policy.unnormalize, image_size=cfg.data.env_image_size,
                                   max_episode_steps=cfg.data.max_episode_steps, keep_trajectories=True)
        episodes_to_buffer(result.trajectories, self.online, lambda a: a, cfg.data.gamma)
        return {"online/collect_success": result.success_rate, "online/episodes": float(self.online.num_episodes)}

    # ---- train ---------------------------------------------------------------------------------------------------
    def train(self) -> None:
        from tqdm import tqdm

        cfg = self.cfg
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
            if self.refresh == cfg.parl.offline_refreshes:
                self._reset_policy_optimizer()
            self.save_checkpoint()
            if self.refresh == cfg.parl.offline_refreshes and self.on_stage_end is not None:
                self.on_stage_end("offline", self.policy)
        while self.round < cfg.online.rounds:
            if stop_after is not None and self.refresh + self.round >= stop_after:
                return
            bar.set_description("pa-rl online")
            stats = self.collect()
            self.logger.log(self.step, stats, phase="online", round=self.round)
            self.improve(cfg.online.critic_steps_per_round, cfg.online.distill_steps_per_round)
            self.round += 1
            bar.update(1)
            self.save_checkpoint()
        bar.close()
        if cfg.online.rounds and self.on_stage_end is not None:
            self.on_stage_end("online", self.policy)

    def _reset_policy_optimizer(self) -> None:
        """Official PA-RL: the policy optimiser state is reset at the offline→online switch."""
        self.policy_optimizer.load_state_dict(self._policy_optimizer().state_dict())

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        model = self.accelerator.unwrap_model(self.model)
        critic = self.accelerator.unwrap_model(self.critic)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}

        def write(tmp: Path) -> None:
            torch.save({k: v for k, v in model.state_dict().items() if k in trainable}, tmp / "policy_trainable.pt")
            torch.save(self.policy_optimizer.state_dict(), tmp / "policy_optimizer.pt")
            critic.save(tmp / "critic")
            torch.save(self.critic_optimizer.state_dict(), tmp / "critic_optimizer.pt")
            (tmp / "config.yaml").write_text(to_yaml(self.cfg))

        self.checkpoints.save(self.refresh * 1000 + self.round, write,
                              {"distill_step": self.step, "refresh": self.refresh, "round": self.round,
                               "online_episodes": self.online.num_episodes, "sampler_rng": rng_state(self.rng)},
                              extra_generators={"update": self.generator})

    def _load_checkpoint(self, path: Path) -> None:
        from vla_parl.critic import QCritic

        model = self.accelerator.unwrap_model(self.model)
        model.load_state_dict(torch.load(path / "policy_trainable.pt", weights_only=True), strict=False)
        self.policy_optimizer.load_state_dict(torch.load(path / "policy_optimizer.pt", weights_only=False))
        critic = self.accelerator.unwrap_model(self.critic)
        tokenize = critic.encoder.instruction.tokenize if critic.encoder.instruction is not None else None
        critic.load_state_dict(QCritic.load(path / "critic", tokenize=tokenize).state_dict())
        self.critic_optimizer.load_state_dict(torch.load(path / "critic_optimizer.pt", weights_only=False))
        state = self.checkpoints.load(path, extra_generators={"update": self.generator})
        set_rng_state(self.rng, state["sampler_rng"])
        self.step, self.refresh, self.round = state["distill_step"], state["refresh"], state["round"]
        self._truncate_online(state["online_episodes"])

    def _truncate_online(self, keep: int) -> None:
        """Episodes added after the checkpoint (a kill mid-round) are dropped: rebuild the first `keep`."""
        from vla_parl.data import ReplayBuffer

        if self.online.num_episodes == keep:
            return
        root = self.online.root
        old = root.with_name(root.name + ".old")
        self.online.close()
        shutil.rmtree(old, ignore_errors=True)
        root.rename(old)
        source = ReplayBuffer(old, gamma=self.cfg.data.gamma, readonly=True)
        self.online = ReplayBuffer(root, gamma=self.cfg.data.gamma)
        for eid in source.episode_ids[:keep]:
            ep = source.episode(eid)
            meta = ep["meta"]
            self.online.add_episode({k: np.asarray(v) for k, v in ep["obs"].items()}, np.asarray(ep["action"]),
                                    np.asarray(ep["reward"]), terminal=meta["terminal"],
                                    instruction=meta["instruction"], mc_return=np.asarray(ep["mc_return"]),
                                    info=meta["info"])
        source.close()
        shutil.rmtree(old, ignore_errors=True)

    def export(self, directory: Path | None = None) -> Path:
        """`<run>/final/model` (LoRA merged) and `<run>/final/critic`."""
        import copy

        from vla_parl.models.openvla.lora import has_lora, merge_lora

        directory = directory or self.run_dir / "final"
        if self.accelerator.is_main_process:
            model = self.accelerator.unwrap_model(self.model)
            if has_lora(model):
                model = merge_lora(copy.deepcopy(model))
            model.save_pretrained(directory / "model")
            self.accelerator.unwrap_model(self.critic).save(directory / "critic")
        return directory

    def cleanup(self) -> None:
        self.logger.close()
        self.offline.close()
        self.online.close()


def main(cfg: ParlConfig, run_dir: str | Path, resume: bool = False) -> int:
    recipe = ParlRecipe(cfg, run_dir, resume=resume)
    recipe.setup()
    recipe.train()
    if recipe.refresh >= cfg.parl.offline_refreshes and recipe.round >= cfg.online.rounds:
        recipe.export()
    recipe.cleanup()
    return 0


if __name__ == "__main__":
    from vla_parl.cli.run import run_module_main

    sys.exit(run_module_main("parl"))
