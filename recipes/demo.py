"""The embedded CPU demo: scripted demos → SFT → Cal-QL critic → offline PA-RL → online PA-RL, evaluated.

    vla-parl run demo                         # one seed (~13 min on 2 CPU cores)
    vla-parl run demo seeds=[0,1,2]           # the 3-seed table (3× the time)

For each seed, on the built-in simulator with the tiny OpenVLA (full fine-tune; `lora.enabled=true` for
LoRA): collect noisy-expert demonstrations, behaviour-clone them (`SFTRecipe`), pre-train the critic with
Cal-QL (`CriticRecipe`), then run PA-RL offline and online (`ParlRecipe`). The success rate of the
*greedy policy itself* is measured after each phase on the same seeded evaluation episodes; two ablations
run through the same harness: re-ranking SFT samples with the critic at inference only (V-GPS-style,
no distillation) and PA-RL without local gradient steps (action_optimizer.num_steps=0).
Outputs: report.md, summary.json, metrics.jsonl, curves_*.png, rollouts_before_after.gif,
final/model + final/critic (first seed), and each phase's own run dir under seed_<s>/ (their copies of the
demo buffer are removed once the seed is done: about 0.5 GB per seed remains).
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from vla_parl.config.schema import to_dict, to_yaml
from vla_parl.demo.report import setup_notes
from vla_parl.recipes._configs import (CriticRecipeConfig, DemoRecipeConfig, ParlCriticOptimSection, ParlRecipeConfig,
                                        SFTRecipeConfig)
from vla_parl.training import MetricLogger
from vla_parl.training.metrics import read_metrics, truncate_metrics
from vla_parl.utils.files import atomic_write_text

__all__ = ["DemoRecipe", "main"]


class DemoRecipe:
    def __init__(self, cfg: DemoRecipeConfig, run_dir: str | Path, *, resume: bool = False) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.results: dict[int, dict[str, Any]] = {}
        self.wall: dict[int, dict[str, float]] = {}
        self.frames: dict[str, list] = {}
        self.frame_successes: dict[str, list[bool]] = {}   # outcome of each recorded episode (GIF captions)

    # ---- setup -----------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.yaml", to_yaml(self.cfg))
        if self.cfg.run.threads:
            torch.set_num_threads(self.cfg.run.threads)
        state = self.run_dir / "demo_state.json"
        if self.resume and state.is_file():
            saved = json.loads(state.read_text())
            self.results = {int(k): v for k, v in saved["results"].items()}
            self.wall = {int(k): v for k, v in saved["wall"].items()}
            if "metric_records" in saved:      # drop what a phase logged after the last saved result: it re-runs
                truncate_metrics(self.run_dir / "metrics.jsonl", saved["metric_records"])
        elif (self.run_dir / "metrics.jsonl").exists():
            (self.run_dir / "metrics.jsonl").unlink()
        self.logger = MetricLogger(self.run_dir, wandb=self.cfg.run.wandb, run_name=self.run_dir.name,
                                   config=to_dict(self.cfg))
        self.start = time.perf_counter()

    def _save_state(self) -> None:
        atomic_write_text(self.run_dir / "demo_state.json", json.dumps(
            {"results": self.results, "wall": self.wall, "metric_records": self.logger.sync()}, indent=2))

    # ---- the phase configs, derived from the demo's sections ---------------------------------------------------------
    def _run(self, seed: int) -> Any:
        return replace(self.cfg.run, seed=seed, checkpoint_every=10**9, stop_after=None)

    def _model(self, seed: int) -> Any:
        return replace(self.cfg.model, seed=seed)

    def sft_config(self, seed: int) -> SFTRecipeConfig:
        return SFTRecipeConfig(model=self._model(seed), lora=self.cfg.lora, data=self._data(seed), optim=self.cfg.sft,
                         run=self._run(seed))

    def critic_config(self, seed: int) -> CriticRecipeConfig:
        c = self.cfg
        return CriticRecipeConfig(model=self._model(seed), data=self._data(seed), critic=c.critic, objective=c.objective,
                            action_optimizer=c.action_optimizer, optim=c.critic_optim,
                            candidate_cache_states=c.candidate_cache_states, run=self._run(seed))

    def parl_config(self, seed: int, num_steps: int | None = None) -> ParlRecipeConfig:
        """PA-RL's config for a seed. With online.env=robot the learner reads the seed's robot loop
        (`seed_<s>/robot/`); the no-local-steps ablation (`num_steps`) collects in-process on the tabletop."""
        c = self.cfg
        action_optimizer = c.action_optimizer if num_steps is None else replace(c.action_optimizer, num_steps=num_steps)
        online = c.online
        if online.env == "robot" and num_steps is None:
            robot = self._robot_dir(seed)
            online = replace(online, robot=replace(online.robot, replay_dir=str(robot / "episodes"),
                                                   publish_dir=str(robot / "published"), publish="model"))
        elif online.env == "robot":
            online = replace(online, env="tabletop")
        # the parl phase trains the critic as the critic phase did, for its own steps (parl.*, online.*)
        critic_optim = ParlCriticOptimSection(**{f.name: getattr(c.critic_optim, f.name)
                                                 for f in fields(ParlCriticOptimSection)})
        return ParlRecipeConfig(model=self._model(seed), lora=replace(c.lora, enabled=False), data=self._data(seed),
                                critic=c.critic, objective=c.objective, action_optimizer=action_optimizer,
                                parl=c.parl, online=online, policy_optim=c.policy_optim, critic_optim=critic_optim,
                                run=self._run(seed))

    def _robot_dir(self, seed: int) -> Path:
        return self.run_dir / f"seed_{seed}" / "robot"

    def robot_loop(self, seed: int, parl: Any) -> Any:
        """online.env=robot: export the policy and critic the offline stage ended with (`robot/v0/`), serve them
        with episode sessions and policy updates, and start the simulated robots (`RobotLoop`). The robots run
        the remaining rounds' episodes with the scenes the in-process online phase would reset to; they act as
        online.actor says (policy samples at temperature 1: mode=sample; the operator: mode=refined)."""
        from vla_parl.demo.robot_loop import RobotLoop

        c, robot = self.cfg, self._robot_dir(seed)
        if not (robot / "v0" / "model").is_dir():
            parl.export(robot / "v0")
        rounds_left = c.online.rounds - parl.round
        d = c.data
        robot_args = ["--task", d.task, "--episodes", str(rounds_left * c.online.episodes_per_round),
                      "--processes", str(c.robot_processes), "--mode",
                      "refined" if c.online.actor == "operator" else "sample",
                      "--seed", str(seed * 100_000 + 50_000 + parl.round * c.online.episodes_per_round),
                      "--max-steps", str(d.max_episode_steps), "--image-size", str(d.env_image_size),
                      "--unnorm-key", c.model.unnorm_key, "--timeout", "120",
                      # paced as PA-RL's real-robot rounds: a round's episodes come from the newest version
                      "--episodes-per-version", str(c.online.episodes_per_round)]
        if d.targets:
            robot_args += ["--targets", *d.targets]
        loop = RobotLoop(robot, checkpoint=robot / "v0" / "model", critic=robot / "v0" / "critic",
                         episodes_dir=robot / "episodes", publish_dir=robot / "published", robot_args=robot_args,
                         threads=c.run.threads or 1)
        loop.start()
        print(f"[seed {seed}] online through the robot loop: server {loop.server.url}, {c.robot_processes} "
              f"simulated robot(s); logs in {robot}", flush=True)
        return loop

    def _data(self, seed: int) -> Any:
        return replace(self.cfg.data, seed=self.cfg.data.seed + 1000 * seed)

    # ---- evaluation ----------------------------------------------------------------------------------------------------
    def evaluate(self, seed: int, row: str, act: Any, unnormalize: Any, record: bool = False) -> dict[str, Any]:
        from tqdm import tqdm

        from vla_parl.eval.tabletop import evaluate_tabletop

        e, d = self.cfg.eval, self.cfg.data
        with tqdm(total=e.episodes, desc=f"eval {row}", leave=False, disable=not self.cfg.run.progress) as bar:
            result = evaluate_tabletop(act, task=d.task, episodes=e.episodes, seed=e.seed, unnormalize=unnormalize,
                                       image_size=d.env_image_size, max_episode_steps=d.max_episode_steps,
                                       targets=d.targets, record=e.gif_episodes if record else 0,
                                       progress=bar.update)
        summary = result.summary()
        self.results.setdefault(seed, {})[row] = summary
        if record:
            self.frames[row] = result.frames
            self.frame_successes[row] = list(result.successes[:len(result.frames)])
        self.logger.log(0, {f"eval/{row}/success_rate": summary["success_rate"]}, seed=seed, phase=row)
        print(f"[seed {seed}] {row:<15} success {100 * summary['success_rate']:5.1f}% "
              f"({summary['successes']}/{summary['episodes']})", flush=True)
        self._save_state()
        return summary

    def _timed(self, seed: int, phase: str, started: float) -> None:
        self.wall.setdefault(seed, {})[phase] = time.perf_counter() - started

    def _import_metrics(self, seed: int, run: str, run_dir: Path) -> None:
        path = run_dir / "metrics.jsonl"
        for record in read_metrics(path) if path.is_file() else []:
            record.pop("time", None)
            step = record.pop("step")
            tags = {k: record.pop(k) for k in ("phase", "round") if k in record}
            self.logger.log(step, {k: v for k, v in record.items() if isinstance(v, (int, float))}, seed=seed,
                            run=run, **tags)

    # ---- train: every seed, every phase --------------------------------------------------------------------------------
    def train(self) -> None:
        for seed in self.cfg.seeds:
            self.run_seed(seed)

    def run_seed(self, seed: int) -> None:
        from vla_parl.critic import QCritic
        from vla_parl.eval.tabletop import greedy_actor, improvement_actor
        from vla_parl.models import OpenVLA
        from vla_parl.parl import ImprovementOperator
        from vla_parl.policy.openvla import OpenVLAPolicy
        from vla_parl.training.data import load_episodes

        from vla_parl.recipes.critic import CriticRecipe
        from vla_parl.recipes.parl import ParlRecipe
        from vla_parl.recipes.sft import SFTRecipe

        cfg, root = self.cfg, self.run_dir / f"seed_{seed}"
        done = self.results.get(seed, {})
        unnorm_key = cfg.model.unnorm_key
        t = time.perf_counter()
        episodes = load_episodes(self._data(seed), progress=cfg.run.progress)
        print(f"[seed {seed}] demos: {len(episodes)} episodes, expert success "
              f"{100 * sum(e['success'] for e in episodes) / len(episodes):.0f}%", flush=True)
        self._timed(seed, "demos", t)

        # 1. SFT
        t = time.perf_counter()
        if (root / "sft" / "final" / "model").is_dir() and "sft" in done:
            sft_model = OpenVLA.from_pretrained(root / "sft" / "final" / "model")
        else:
            sft = _run_phase(SFTRecipe(self.sft_config(seed), root / "sft", resume=self.resume, episodes=episodes))
            sft_model = sft.accelerator.unwrap_model(sft.model)
            self._import_metrics(seed, "sft", root / "sft")
        sft_model.eval()
        sft_policy = OpenVLAPolicy(sft_model, unnorm_key=unnorm_key)
        self._timed(seed, "sft", t)
        t = time.perf_counter()
        self.evaluate(seed, "sft", greedy_actor(sft_policy), sft_policy.unnormalize, record=seed == cfg.seeds[0])
        self._timed(seed, "eval_sft", t)

        # 2. critic pre-training (Cal-QL)
        t = time.perf_counter()
        critic_recipe = CriticRecipe(self.critic_config(seed), root / "critic", resume=self.resume,
                                     policy_model=sft_model, episodes=episodes)
        if (root / "critic" / "final" / "critic").is_dir() and "vgps" in done:
            tokenizer = sft_model.processor.tokenizer
            critic = QCritic.load(root / "critic" / "final" / "critic",
                                  tokenize=(lambda texts: tokenizer.encode_batch(texts)) if cfg.critic.instruction else None)
        else:
            _run_phase(critic_recipe)
            critic = critic_recipe.accelerator.unwrap_model(critic_recipe.critic)
            self._import_metrics(seed, "critic", root / "critic")
        self._timed(seed, "critic", t)
        if "vgps" in cfg.ablations and "vgps" not in done:
            t = time.perf_counter()
            # the critic's operator over SFT samples, no distillation: N from eval.vgps_num_samples, argmax
            vgps = ImprovementOperator(critic, sft_policy, cfg.action_optimizer,
                                       num_samples=cfg.eval.vgps_num_samples, choice="argmax")
            self.evaluate(seed, "vgps", improvement_actor(vgps, seed), sft_policy.unnormalize)
            self._timed(seed, "eval_vgps", t)

        # 3. + 4. offline then online PA-RL (evaluated when each stage ends); online.env=robot: the online stage
        # learns from simulated robots acting through a policy server that hot-swaps each published round
        loops: list[Any] = []
        robots_online = cfg.online.env == "robot" and cfg.online.rounds > 0

        def hook(stage: str, policy: Any) -> None:
            started = time.perf_counter()
            self.evaluate(seed, stage, greedy_actor(policy), policy.unnormalize,
                          record=stage == "online" and seed == cfg.seeds[0])
            self._timed(seed, f"eval_{stage}", started)
            if stage == "offline" and robots_online:
                loops.append(self.robot_loop(seed, parl))

        if "online" not in done:
            t = time.perf_counter()
            parl = ParlRecipe(self.parl_config(seed), root / "parl", resume=self.resume,
                              policy_model=copy.deepcopy(sft_model), critic=copy.deepcopy(critic), episodes=episodes,
                              on_stage_end=hook)
            parl.setup()
            try:
                if robots_online and parl.refresh >= cfg.parl.offline_refreshes and parl.round < cfg.online.rounds:
                    loops.append(self.robot_loop(seed, parl))      # resumed past the offline stage
                parl.train()
            finally:
                for loop in loops:
                    loop.stop()
            parl.export(self.run_dir / "final" if seed == cfg.seeds[0] else None)
            parl.cleanup()
            self._import_metrics(seed, "parl", root / "parl")
            self._timed(seed, "parl_total", t)

        # 5. ablation: PA-RL without local gradient steps
        if "no_local_steps" in cfg.ablations and "no_local_steps" not in done:
            t = time.perf_counter()

            def ablation_hook(stage: str, policy: Any) -> None:
                if stage == "online" or cfg.online.rounds == 0:
                    self.evaluate(seed, "no_local_steps", greedy_actor(policy), policy.unnormalize)

            ablation = ParlRecipe(self.parl_config(seed, num_steps=0), root / "parl_no_local_steps",
                                  resume=self.resume, policy_model=copy.deepcopy(sft_model),
                                  critic=copy.deepcopy(critic), episodes=episodes, on_stage_end=ablation_hook)
            ablation.setup()
            ablation.train()
            ablation.cleanup()
            self._import_metrics(seed, "parl_no_local_steps", root / "parl_no_local_steps")
            self._timed(seed, "ablation_no_local_steps", t)
        self._save_state()
        for buffer in root.glob("*/data"):   # each phase's copy of the demos (~100 MB), rebuilt from the seed on demand
            shutil.rmtree(buffer, ignore_errors=True)

    # ---- outputs -------------------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Phase outputs are the demo's checkpoints (each phase recipe checkpoints itself); write the report."""
        from vla_parl.demo.report import plot_learning_curves, write_report, write_rollout_gif, write_summary

        summary = write_summary(self.run_dir / "summary.json", to_dict(self.cfg), self.results, self.wall,
                                time.perf_counter() - self.start)
        command = "vla-parl run demo" + (f" seeds=[{','.join(map(str, self.cfg.seeds))}]"
                                         if self.cfg.seeds != [0] else "")
        write_report(self.run_dir / "report.md", summary, command, setup_notes(to_dict(self.cfg)))
        plot_learning_curves(read_metrics(self.run_dir / "metrics.jsonl"), summary, self.run_dir)
        if "sft" in self.frames and "online" in self.frames:
            write_rollout_gif(self.run_dir / "rollouts_before_after.gif", self.frames["sft"], self.frames["online"],
                              labels=("SFT", "online PA-RL"),
                              successes=(self.frame_successes["sft"], self.frame_successes["online"]))
        print((self.run_dir / "report.md").read_text(), flush=True)
        self.print_outputs()

    def print_outputs(self) -> None:
        """Where the outputs are and what to run next (after the report)."""
        run, final = self.run_dir, self.run_dir / "final"
        lines = [f"demo: finished {len(self.results)} seed(s) in {time.perf_counter() - self.start:.0f} s",
                 f"  report:   {run / 'report.md'}  (summary.json, curves_training.png, curves_success.png"
                 + (", rollouts_before_after.gif" if (run / "rollouts_before_after.gif").is_file() else "") + ")"]
        if (final / "model").is_dir():
            from vla_parl.recipes._summary import eval_command

            lines += [f"  model:    {final / 'model'}", f"  critic:   {final / 'critic'}",
                      f"  logs:     {run / 'metrics.jsonl'}  (each phase's run dir: {run / 'seed_<s>'}/)",
                      "  next:     " + eval_command(self.cfg.data, self.cfg.model.unnorm_key, final / "model",
                                                    run / "eval"),
                      f"            vla-parl serve --checkpoint {final / 'model'} --critic {final / 'critic'}"]
        print("\n".join(lines), flush=True)

    def cleanup(self) -> None:
        self.logger.close()


def _run_phase(recipe: Any) -> Any:
    """Run a phase recipe to its exported output (`<run>/final/`)."""
    recipe.setup()
    recipe.train()
    recipe.export()
    recipe.cleanup()
    return recipe


def main(cfg: DemoRecipeConfig, run_dir: str | Path, resume: bool = False) -> int:
    recipe = DemoRecipe(cfg, run_dir, resume=resume)
    recipe.setup()
    recipe.train()
    recipe.save_checkpoint()
    recipe.cleanup()
    return 0


if __name__ == "__main__":
    from vla_parl.cli.run import run_module_main

    sys.exit(run_module_main("demo"))
