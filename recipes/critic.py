"""Offline critic pre-training (Cal-QL by default) against a frozen SFT policy.

    vla-parl run critic --config critic_tabletop --output-dir runs/critic policy=runs/sft/final/model

The policy is frozen here, so its candidates are sampled once (N per state, for a fixed pool of
`candidate_cache_states` transitions: their s and s') into a `CandidateCache` — what the official PA-RL
code's caching workers do — and every `CriticUpdate` step reads them:

    a'* = action_optimization(s')                       (cached candidates → top-k → local ascent → argmax)
    y   = r + γ (1 − d) min_{i∈pair} Q̄_i(s', a'*)
    L   = ½ E[(Q(s,a) − y)²] + α (E_s log Σ_{a∼μ} exp max(Q(s,a), V^μ(s)) − E_D Q(s,a))      (Cal-QL)

Output: `<run>/final/critic` (`QCritic.load`-able), checkpoints (critic + target, optimizer, cache, RNG).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_parl.config.schema import to_yaml
from vla_parl.recipes._configs import RANDOM_POLICY, CriticRecipeConfig, critic_source, policy_source
from vla_parl.parl.candidate_cache import CandidateCache
from vla_parl.training.builders import (as_policy, build_critic, instruction_tokenizer, is_openvla,
                                        load_start_policy, make_accelerator, resume_and_open_logger)
from vla_parl.training.checkpointing import CheckpointManager, rng_state, set_rng_state
from vla_parl.training.data import batch_to_observation, load_episodes, open_offline_data
from vla_parl.training.optimizers import adam
from vla_parl.training.parallel import local_rows, mean_over_ranks, prepare_replicated
from vla_parl.utils.files import atomic_write_text

__all__ = ["CriticRecipe", "main"]


class CriticRecipe:
    def __init__(self, cfg: CriticRecipeConfig, run_dir: str | Path, *, resume: bool = False, policy_model: Any = None,
                 episodes: list[dict[str, Any]] | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.policy_model = policy_model
        self._episodes = episodes
        self.step = 0

    # ---- setup: accelerator → frozen policy → offline data → critic → optimizer → candidate cache → resume ------
    def setup(self) -> None:
        from vla_parl.parl import CriticUpdate

        cfg = self.cfg
        self.accelerator = make_accelerator(cfg.run)
        if self.accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", to_yaml(cfg))
        torch.manual_seed(cfg.run.seed)
        # an OpenVLA (model:), or the diffusion / Gaussian policy a policy.type=... sft run saved
        model = self.policy_model or load_start_policy(cfg.model, policy_source(cfg.policy),
                                                       device=self.accelerator.device)
        model.requires_grad_(False)
        self.policy = as_policy(model.eval(), cfg.model.unnorm_key)
        episodes, self._episodes = self._episodes, None
        self.buffer = open_offline_data(   # tabletop: <run>/data/offline; a dataset on disk: its shared store
            self.accelerator, cfg.data, self.run_dir,
            lambda: episodes if episodes is not None else load_episodes(cfg.data, progress=cfg.run.progress),
            model.action_normalizer(cfg.model.unnorm_key).normalize, cfg.data.gamma, progress=cfg.run.progress, episodes_given=episodes is not None)
        example = self.buffer.sample(1, np.random.default_rng(0))["obs"]
        self.use_state = cfg.critic.privileged_state
        self.critic = build_critic(critic_source(cfg.critic), instruction_tokenizer(model),
                                   action_dim=self.policy.action_dim,
                                   proprio_dim=example["proprio"].shape[1] if "proprio" in example else 0,
                                   state_dim=example["state"].shape[1] if "state" in example else 0)
        optimizer = adam(self.critic.trainable_parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        # DDP under every launch: even an FSDP config replicates the small critic (the policy is frozen here)
        self.critic, self.optimizer = prepare_replicated(self.accelerator, self.critic, optimizer)
        self.generator = torch.Generator().manual_seed(cfg.run.seed)
        # the same generator on every rank: all draw the global batch, each trains on its own rows
        self.rng = np.random.default_rng([cfg.run.seed, 0])
        self.cache = CandidateCache(self.policy, cfg.objective.num_samples)
        self.update = CriticUpdate(self.critic, self.optimizer, self.cache, cfg.action_optimizer, cfg.objective,
                                   gamma=cfg.data.gamma, accelerator=self.accelerator, generator=self.generator)
        self.update.core.improvement = cfg.action_optimizer.to_dict()   # saved with the critic
        self.checkpoints = CheckpointManager(self.run_dir, keep=cfg.run.keep_checkpoints)
        self.logger, resumed = resume_and_open_logger(self.accelerator, self.checkpoints, self.run_dir, cfg,
                                                      self.resume, self._load_checkpoint)
        if not resumed:
            self._build_pool()

    def _build_pool(self) -> None:
        """A fixed pool of S transitions; the frozen policy's candidates for their s and s' are cached."""
        from vla_parl.policy.base import Observation

        S = self.cfg.candidate_cache_states
        self.pool = self.buffer.sample(S, np.random.default_rng([self.cfg.run.seed, 7]))
        obs = batch_to_observation(self.pool["obs"], use_state=self.use_state)
        nxt = batch_to_observation(self.pool["next_obs"], use_state=self.use_state)
        states = Observation(images=torch.cat([obs.images, nxt.images]), instructions=obs.instructions + nxt.instructions,
                             proprio=None if obs.proprio is None else torch.cat([obs.proprio, nxt.proprio]),
                             state=None if obs.state is None else torch.cat([obs.state, nxt.state]))
        from tqdm import tqdm

        with tqdm(total=len(states), desc="critic: policy candidates", leave=False,
                  disable=not self.cfg.run.progress) as bar:
            self.cache.refresh(states, generator=torch.Generator().manual_seed(self.cfg.run.seed + 1),
                               progress=bar.update)

    def batch(self, rows: np.ndarray) -> Any:
        from vla_parl.parl import TransitionBatch

        S = len(self.pool["action"])
        return TransitionBatch(obs=self.cache.batch(rows), actions=torch.from_numpy(self.pool["action"][rows]),
                               rewards=torch.from_numpy(self.pool["reward"][rows]),
                               next_obs=self.cache.batch(rows + S), dones=torch.from_numpy(self.pool["done"][rows]),
                               mc_returns=torch.from_numpy(self.pool["mc_return"][rows]))

    # ---- train ---------------------------------------------------------------------------------------------------
    def train(self) -> None:
        cfg = self.cfg
        total = cfg.optim.steps
        stop = total if cfg.run.stop_after is None else min(total, cfg.run.stop_after)
        from tqdm import tqdm

        bar = tqdm(total=total, initial=self.step, desc="critic", leave=False,
                   disable=not (cfg.run.progress and self.accelerator.is_main_process))
        S = len(self.pool["action"])
        global_batch = cfg.optim.batch_size * self.accelerator.num_processes
        local = local_rows(global_batch)
        while self.step < stop:
            rows = self.rng.integers(0, S, size=global_batch)
            stats = mean_over_ranks(self.update.step(self.batch(rows if local is None else rows[local])))
            self.step += 1
            bar.update(1)
            if self.step % cfg.run.log_every == 0 or self.step == total:
                self.logger.log(self.step, stats, phase="critic")
                bar.set_postfix(loss=f"{stats['critic/loss']:.4f}", refresh=False)
            if self.step % cfg.run.checkpoint_every == 0 or self.step == total:
                self.save_checkpoint()
        bar.close()

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        critic = self.accelerator.unwrap_model(self.critic)

        def write(tmp: Path) -> None:
            critic.save(tmp / "critic")
            torch.save(self.optimizer.state_dict(), tmp / "critic_optimizer.pt")
            torch.save({"pool": self.pool, "candidates": self.cache.candidates, "states": self.cache.states},
                       tmp / "candidate_cache.pt")
            (tmp / "config.yaml").write_text(to_yaml(self.cfg))

        self.checkpoints.save(self.step, write, {"sampler_rng": rng_state(self.rng), "phase": "critic"},
                              extra_generators={"update": self.generator})

    def _load_checkpoint(self, path: Path) -> int:
        from vla_parl.critic import QCritic

        critic = self.accelerator.unwrap_model(self.critic)
        tokenize = critic.encoder.instruction.tokenize if critic.encoder.instruction is not None else None
        critic.load_state_dict(QCritic.load(path / "critic", tokenize=tokenize).state_dict())
        self.optimizer.load_state_dict(torch.load(path / "critic_optimizer.pt", weights_only=False))
        saved = torch.load(path / "candidate_cache.pt", weights_only=False)
        self.pool, self.cache.candidates, self.cache.states = saved["pool"], saved["candidates"], saved["states"]
        state = self.checkpoints.load(path, extra_generators={"update": self.generator})
        set_rng_state(self.rng, state["sampler_rng"])
        self.step = state["step"]
        return self.step

    def export(self, directory: Path | None = None) -> Path:
        directory = directory or self.run_dir / "final" / "critic"
        if self.accelerator.is_main_process:
            self.accelerator.unwrap_model(self.critic).save(directory)
        return directory

    def cleanup(self) -> None:
        self.logger.close()
        self.buffer.close()


def summary(recipe: CriticRecipe, wall_s: float) -> str:
    """The end-of-run summary (main rank): losses, wall time, the critic, the next commands."""
    from vla_parl.recipes._summary import eval_command, print_summary

    cfg, run = recipe.cfg, recipe.run_dir
    critic = run / "final" / "critic"
    commands = []
    # the SFT policy acting through this critic (`eval tabletop` takes an OpenVLA)
    if cfg.policy != RANDOM_POLICY and cfg.data.kind == "tabletop" and is_openvla(recipe.policy):
        commands.append(eval_command(cfg.data, cfg.model.unnorm_key, Path(cfg.policy), run / "eval", critic=critic))
    parl_config = {"tabletop": "", "rlds": " --config parl_bridge_7b", "calvin": " --config parl_calvin_7b"}
    if cfg.data.kind in parl_config:    # a built-in PA-RL config reads this kind of data
        data_path = f" data.path={cfg.data.path}" if cfg.data.path else ""
        commands.append(f"vla-parl run parl{parl_config[cfg.data.kind]} --output-dir {run.parent / 'parl'}{data_path} "
                        f"policy={cfg.policy} critic.checkpoint={critic}")
    return print_summary("critic", run, done=recipe.step, total=cfg.optim.steps, unit="steps", wall_s=wall_s,
                         outputs={"critic": critic},
                         metric_keys=("critic/loss", "critic/td_loss", "critic/q_data"), next_commands=commands)


def main(cfg: CriticRecipeConfig, run_dir: str | Path, resume: bool = False) -> int:
    import time

    started = time.perf_counter()
    recipe = CriticRecipe(cfg, run_dir, resume=resume)
    recipe.setup()
    recipe.train()
    if recipe.step >= cfg.optim.steps:
        recipe.export()
    recipe.cleanup()
    if recipe.accelerator.is_main_process:
        summary(recipe, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    from vla_parl.cli.run import run_module_main

    sys.exit(run_module_main("critic"))
