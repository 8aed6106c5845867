"""The embedded CPU demo: scripted demos → SFT → Cal-QL critic → offline PA-RL → online PA-RL, evaluated.

    vla-parl run demo                         # one seed (OpenVLA + diffusion, each with its ablation process)
    vla-parl run demo seeds=[0,1,2]           # the 3-seed table (3× the time)

For each seed, on the built-in simulator with the tiny OpenVLA (full fine-tune; `lora.enabled=true` for
LoRA): collect noisy-expert demonstrations, behaviour-clone them (`SFTRecipe`), pre-train the critic with
Cal-QL (`CriticRecipe`), then run PA-RL offline and online (`ParlRecipe`). After each phase the same seeded
evaluation episodes are run twice: with the *policy alone* (greedy decoding) and with *policy + operator* (the
improvement operator over its samples with the run's critic at that point: PA-RL as the paper evaluates it);
rows are keyed "<policy>/<phase>/<acting>" in summary.json ("openvla/online/operator", ...). Two ablations run
through the same harness: the operator over the SFT policy with the pre-trained critic (V-GPS-style, no
distillation) and PA-RL without local gradient steps (action_optimizer.num_steps=0).
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
    def __init__(self, cfg: DemoRecipeConfig, run_dir: str | Path, *, resume: bool = False,
                 state_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        # config.yaml, demo_state.json and metrics.jsonl: the run dir, or a policy worker's seed_<s>/<kind>/
        self.state_dir = Path(state_dir) if state_dir is not None else self.run_dir
        self.results: dict[int, dict[str, Any]] = {}
        self.wall: dict[int, dict[str, float]] = {}
        self.frames: dict[str, list] = {}
        self.frame_successes: dict[str, list[bool]] = {}   # outcome of each recorded episode (GIF captions)

    # ---- setup -----------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        here = self.state_dir
        here.mkdir(parents=True, exist_ok=True)
        atomic_write_text(here / "config.yaml", to_yaml(self.cfg))
        if self.cfg.run.threads:
            torch.set_num_threads(self.cfg.run.threads)
        state = here / "demo_state.json"
        if self.resume and state.is_file():
            saved = json.loads(state.read_text())
            self.results = {int(k): v for k, v in saved["results"].items()}
            self.wall = {int(k): v for k, v in saved["wall"].items()}
            if "metric_records" in saved:      # drop what a phase logged after the last saved result: it re-runs
                truncate_metrics(here / "metrics.jsonl", saved["metric_records"])
        elif (here / "metrics.jsonl").exists():
            (here / "metrics.jsonl").unlink()
        self.logger = MetricLogger(here, wandb=self.cfg.run.wandb and here == self.run_dir,
                                   run_name=self.run_dir.name, config=to_dict(self.cfg))
        self.start = time.perf_counter()

    def _save_state(self) -> None:
        atomic_write_text(self.state_dir / "demo_state.json", json.dumps(
            {"results": self.results, "wall": self.wall, "metric_records": self.logger.sync()}, indent=2))

    # ---- the phase configs, derived from the demo's sections ---------------------------------------------------------
    def _run(self, seed: int) -> Any:
        return replace(self.cfg.run, seed=seed, checkpoint_every=10**9, stop_after=None)

    def _model(self, seed: int) -> Any:
        return replace(self.cfg.model, seed=seed)

    def sft_config(self, seed: int, kind: str = "openvla") -> SFTRecipeConfig:
        if kind == "openvla":
            return SFTRecipeConfig(model=self._model(seed), lora=self.cfg.lora, data=self._data(seed),
                                   optim=self.cfg.sft, run=self._run(seed))
        section = getattr(self.cfg, kind)
        return SFTRecipeConfig(policy=section.policy, model=self._model(seed), lora=replace(self.cfg.lora, enabled=False),
                               data=self._data(seed), optim=section.sft, run=self._run(seed))

    def critic_config(self, seed: int) -> CriticRecipeConfig:
        c = self.cfg
        return CriticRecipeConfig(model=self._model(seed), data=self._data(seed), critic=c.critic, objective=c.objective,
                            action_optimizer=c.action_optimizer, optim=c.critic_optim,
                            candidate_cache_states=c.candidate_cache_states, run=self._run(seed))

    def parl_config(self, seed: int, num_steps: int | None = None, kind: str = "openvla") -> ParlRecipeConfig:
        """PA-RL's config for a seed and policy class. With online.env=robot the OpenVLA learner reads the seed's
        robot loop (`seed_<s>/robot/`, the policy server serves OpenVLA); the no-local-steps ablation (`num_steps`)
        and the other classes collect in-process on the tabletop."""
        c = self.cfg
        action_optimizer = c.action_optimizer if num_steps is None else replace(c.action_optimizer, num_steps=num_steps)
        online = c.online
        if online.env == "robot" and num_steps is None and kind == "openvla":
            robot = self._robot_dir(seed)
            online = replace(online, robot=replace(online.robot, replay_dir=str(robot / "episodes"),
                                                   publish_dir=str(robot / "published"), publish="model"))
        elif online.env == "robot":
            online = replace(online, env="tabletop")
        # the parl phase trains the critic as the critic phase did, for its own steps (parl.*, online.*)
        critic_optim = ParlCriticOptimSection(**{f.name: getattr(c.critic_optim, f.name)
                                                 for f in fields(ParlCriticOptimSection)})
        parl, policy_optim = c.parl, c.policy_optim
        if kind != "openvla":
            section = getattr(c, kind)
            policy_optim = section.policy_optim
            if section.parl_cache_states is not None:
                parl = replace(parl, cache_states=section.parl_cache_states)
        return ParlRecipeConfig(model=self._model(seed), lora=replace(c.lora, enabled=False), data=self._data(seed),
                                critic=c.critic, objective=c.objective, action_optimizer=action_optimizer,
                                parl=parl, online=online, critic_optim=critic_optim, policy_optim=policy_optim,
                                run=self._run(seed))

    def _robot_dir(self, seed: int) -> Path:
        return self.run_dir / f"seed_{seed}" / "robot"

    def robot_loop(self, seed: int, parl: Any) -> Any:
        """online.env=robot: export the policy and critic the offline stage ended with (`robot/v0/`), serve them
        with episode sessions and policy updates, and start the simulated robots (`RobotLoop`). The robots run
        the remaining rounds' episodes with the scenes the in-process online phase would reset to; they act as
        online.collect_with says (the operator: mode=refined; policy samples at temperature 1: mode=sample)."""
        from vla_parl.demo.robot_loop import RobotLoop

        c, robot = self.cfg, self._robot_dir(seed)
        if not (robot / "v0" / "model").is_dir():
            parl.export(robot / "v0")
        rounds_left = c.online.rounds - parl.round
        d = c.data
        robot_args = ["--task", d.task, "--episodes", str(rounds_left * c.online.episodes_per_round),
                      "--processes", str(c.robot_processes), "--mode",
                      "refined" if c.online.collect_with == "operator" else "sample",
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
        """One row (`vla_parl.demo.report.row_key`: "<policy>/<phase>/<acting>") on the seeded eval episodes."""
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
        print(f"[seed {seed}] {row:<30} success {100 * summary['success_rate']:5.1f}% "
              f"({summary['successes']}/{summary['episodes']})", flush=True)
        self._save_state()
        return summary

    def evaluate_phase(self, seed: int, kind: str, phase: str, policy: Any, operator: Any | None,
                       record: bool = False) -> None:
        """A phase's rows: the policy alone (OpenVLA: greedy decoding; other classes: one sample per step) and,
        given `operator` (the run's critic and settings at that point), policy + operator (N = eval.vgps_num_samples
        samples → top-k → local steps → argmax). Random draws are seeded with eval.seed, as `vla-parl eval tabletop`
        seeds them, so evaluating the exported checkpoint reproduces the rows."""
        from vla_parl.eval.tabletop import improvement_actor, policy_actor
        from vla_parl.demo.report import row_key

        started, seed_eval = time.perf_counter(), self.cfg.eval.seed
        if phase != "vgps":
            self.evaluate(seed, row_key(kind, phase, "policy"), policy_actor(policy, seed_eval), policy.unnormalize,
                          record=record and phase == "sft")
        if operator is not None:
            operator = operator.with_policy(policy).with_config(num_samples=self.cfg.eval.vgps_num_samples)
            self.evaluate(seed, row_key(kind, phase, "operator"), improvement_actor(operator, seed_eval),
                          policy.unnormalize, record=record and phase == "online")
        self._timed(seed, ("" if kind == "openvla" else f"{kind}/") + f"eval_{phase}", started)

    def _timed(self, seed: int, phase: str, started: float) -> None:
        self.wall.setdefault(seed, {})[phase] = time.perf_counter() - started

    def _import_metrics(self, run_dir: Path, **tags: Any) -> None:
        """Copy the records of `run_dir/metrics.jsonl` into this run's log with their own tags (seed, run, phase,
        round: a policy worker's records carry them) and `tags` on top (a phase run's seed and run name)."""
        path = run_dir / "metrics.jsonl"
        for record in read_metrics(path) if path.is_file() else []:
            record.pop("time", None)
            step = record.pop("step")
            own = {k: record.pop(k) for k in ("seed", "run", "phase", "round") if k in record}
            self.logger.log(step, {k: v for k, v in record.items() if isinstance(v, (int, float))},
                            **{**own, **tags})

    # ---- train: every seed, every policy class, every phase -----------------------------------------------------------
    def train(self) -> None:
        for seed in self.cfg.seeds:
            first, *others = self.cfg.policies
            parallel = self.cfg.parallel_policies
            workers = [self._start_worker(seed, kind) for kind in others if parallel and not self._done(seed, kind)]
            try:
                self.run_policy(seed, first)
                for kind in others if not parallel else ():
                    self.run_policy(seed, kind)
                for kind, process in workers:
                    self._join_worker(seed, kind, process)
            finally:
                for _, process in workers:
                    if process.is_alive():
                        process.terminate()
            self._save_state()

    def _root(self, seed: int, kind: str) -> Path:
        """Where a policy class's phase runs live: seed_<s>/ for OpenVLA, seed_<s>/<kind>/ for the others."""
        root = self.run_dir / f"seed_{seed}"
        return root if kind == "openvla" else root / kind

    def _done(self, seed: int, kind: str) -> bool:
        from vla_parl.demo.report import row_key

        last = "no_local_steps" if "no_local_steps" in self._ablations(kind) else "online"
        return row_key(kind, last, "policy") in self.results.get(seed, {})

    def _ablations(self, kind: str) -> list[str]:
        return self.cfg.ablations if kind == "openvla" else getattr(self.cfg, kind).ablations

    def _start_worker(self, seed: int, kind: str) -> tuple[str, Any]:
        """Run `kind`'s phases in a process of its own (spawned: a fresh interpreter), at the same time as the first
        class's; it keeps its state, metrics and results in its phase root (`_root`) for `_join_worker`."""
        return kind, self._spawn(seed, kind, "phases", kind)

    def _spawn(self, seed: int, name: str, job: str, kind: str) -> Any:
        """Start `_worker` on `job` ("phases" | "ablation") of `kind` in a spawned process named after `name`."""
        import multiprocessing

        process = multiprocessing.get_context("spawn").Process(
            target=_worker, args=(to_dict(self.cfg), str(self.run_dir), seed, kind, self.resume, job),
            name=f"demo-{name}-seed{seed}")
        process.start()
        print(f"[seed {seed}] {name}: runs in process {process.pid} at the same time", flush=True)
        return process

    def _join_worker(self, seed: int, kind: str, process: Any, state_dir: Path | None = None) -> None:
        """Wait for a worker, then take its rows, wall times and metric records (in `state_dir`, default the
        class's seed_<s>/<kind>/) into this run's."""
        process.join()
        state_dir = state_dir or self._root(seed, kind)
        if process.exitcode != 0:
            raise RuntimeError(f"the demo's {process.name} process failed with exit code {process.exitcode}: its "
                               f"output is above; `vla-parl run demo --resume` continues from its last finished "
                               f"phase ({state_dir})")
        saved = json.loads((state_dir / "demo_state.json").read_text())
        self.results.setdefault(seed, {}).update(saved["results"].get(str(seed), {}))
        self.wall.setdefault(seed, {}).update(saved["wall"].get(str(seed), {}))
        self._import_metrics(state_dir)
        self._save_state()

    def _ablation_dir(self, seed: int, kind: str) -> Path:
        """The no-local-steps ablation's process state (its PA-RL run is `parl_no_local_steps/` beside it)."""
        return self._root(seed, kind) / "no_local_steps"

    def _load_critic(self, kind: str, sft_model: Any, root: Path) -> Any:
        """The class's pre-trained critic (`<root>/critic/final/critic`), its instructions tokenised as it was."""
        from vla_parl.critic import QCritic

        tokenize = None
        if kind == "openvla" and self.cfg.critic.instruction:
            tokenizer = sft_model.processor.tokenizer
            tokenize = lambda texts: tokenizer.encode_batch(texts)   # noqa: E731
        return QCritic.load(root / "critic" / "final" / "critic", tokenize=tokenize)

    def _policy_model(self, kind: str, model_dir: Path) -> Any:
        """A saved SFT/BC policy of `kind`, in eval mode."""
        if kind == "openvla":
            from vla_parl.models import OpenVLA

            return OpenVLA.from_pretrained(model_dir).eval()
        from vla_parl.training.builders import load_start_policy

        return load_start_policy(self.cfg.model, str(model_dir)).eval()

    def run_policy(self, seed: int, kind: str) -> None:
        """Every phase of one policy class for one seed: SFT/BC → critic → (V-GPS) → offline → online PA-RL
        (→ the no-local-steps ablation), each evaluated with the policy alone and with the operator."""
        from vla_parl.demo.report import row_key
        from vla_parl.parl import ImprovementOperator
        from vla_parl.training.builders import as_policy
        from vla_parl.training.data import load_episodes

        from vla_parl.recipes.critic import CriticRecipe
        from vla_parl.recipes.sft import SFTRecipe

        cfg, root = self.cfg, self._root(seed, kind)
        done = self.results.get(seed, {})
        prefix = "" if kind == "openvla" else f"{kind}/"       # wall-time and metric-run names of the other classes
        record = kind == "openvla" and seed == cfg.seeds[0]     # the before/after GIF: OpenVLA's first seed
        t = time.perf_counter()
        episodes = load_episodes(self._data(seed), progress=cfg.run.progress)
        print(f"[seed {seed}] {kind} demos: {len(episodes)} episodes, expert success "
              f"{100 * sum(e['success'] for e in episodes) / len(episodes):.0f}%", flush=True)
        self._timed(seed, f"{prefix}demos", t)

        # 1. SFT (behaviour cloning with the class's own loss)
        t = time.perf_counter()
        model_dir = root / "sft" / "final" / "model"
        if model_dir.is_dir() and row_key(kind, "sft", "policy") in done:
            sft_model = self._policy_model(kind, model_dir)
        else:
            sft = _run_phase(SFTRecipe(self.sft_config(seed, kind), root / "sft", resume=self.resume,
                                       episodes=episodes))
            sft_model = sft.accelerator.unwrap_model(sft.model).eval()
            self._import_metrics(root / "sft", seed=seed, run=f"{prefix}sft")
        sft_policy = as_policy(sft_model, cfg.model.unnorm_key)
        self._timed(seed, f"{prefix}sft", t)
        self.evaluate_phase(seed, kind, "sft", sft_policy, None, record=record)

        # 2. critic pre-training (Cal-QL on the class's own samples)
        t = time.perf_counter()
        critic_recipe = CriticRecipe(self.critic_config(seed), root / "critic", resume=self.resume,
                                     policy_model=sft_model, episodes=episodes)
        vgps_done = row_key(kind, "vgps", "operator") in done
        if (root / "critic" / "final" / "critic").is_dir() and vgps_done:
            critic = self._load_critic(kind, sft_model, root)
        else:
            _run_phase(critic_recipe)
            critic = critic_recipe.accelerator.unwrap_model(critic_recipe.critic)
            self._import_metrics(root / "critic", seed=seed, run=f"{prefix}critic")
        self._timed(seed, f"{prefix}critic", t)
        if "vgps" in self._ablations(kind) and not vgps_done:
            # the pre-trained critic's operator over SFT samples, no distillation
            self.evaluate_phase(seed, kind, "vgps", sft_policy,
                                ImprovementOperator(critic, sft_policy, cfg.action_optimizer))

        # 3. + 4. offline then online PA-RL (evaluated when each stage ends); 5. the no-local-steps ablation, which
        # needs only the SFT policy and the critic: with parallel_policies it runs in a process of its own from here
        # on, at the same time as PA-RL
        ablate = "no_local_steps" in self._ablations(kind) and row_key(kind, "no_local_steps", "policy") not in done
        ablation = (self._spawn(seed, f"{kind} no-local-steps ablation", "ablation", kind)
                    if ablate and cfg.parallel_policies else None)
        try:
            self._run_parl(seed, kind, sft_model, critic, episodes, record)
            if ablation is not None:
                self._join_worker(seed, kind, ablation, self._ablation_dir(seed, kind))
            elif ablate:
                self.run_ablation(seed, kind, sft_model, critic, episodes)
        finally:
            if ablation is not None and ablation.is_alive():
                ablation.terminate()
        self._save_state()
        for buffer in root.glob("*/data"):   # each phase's copy of the demos (~100 MB), rebuilt from the seed on demand
            shutil.rmtree(buffer, ignore_errors=True)

    def _run_parl(self, seed: int, kind: str, sft_model: Any, critic: Any, episodes: list[dict[str, Any]],
                  record: bool) -> None:
        """Offline then online PA-RL from the SFT policy and the pre-trained critic, each stage evaluated."""
        from vla_parl.demo.report import row_key
        from vla_parl.recipes.parl import ParlRecipe

        cfg, root = self.cfg, self._root(seed, kind)
        prefix = "" if kind == "openvla" else f"{kind}/"
        # online.env=robot: the online stage learns from simulated robots acting through a policy server that
        # hot-swaps each published round
        loops: list[Any] = []
        robots_online = cfg.online.env == "robot" and cfg.online.rounds > 0

        def hook(stage: str, policy: Any) -> None:
            # the policy alone, and with the operator of the run's critic as the stage left it
            self.evaluate_phase(seed, kind, stage, policy, parl.policy_update.operator, record=record)
            if stage == "offline" and robots_online:
                loops.append(self.robot_loop(seed, parl))

        if row_key(kind, "online", "policy") not in self.results.get(seed, {}):
            t = time.perf_counter()
            parl = ParlRecipe(self.parl_config(seed, kind=kind), root / "parl", resume=self.resume,
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
            parl.export(self.run_dir / "final" if kind == "openvla" and seed == cfg.seeds[0] else None)
            parl.cleanup()
            self._import_metrics(root / "parl", seed=seed, run=f"{prefix}parl")
            self._timed(seed, f"{prefix}parl_total", t)

    def run_ablation(self, seed: int, kind: str, sft_model: Any | None = None, critic: Any | None = None,
                     episodes: list[dict[str, Any]] | None = None) -> None:
        """The ablation: PA-RL without local gradient steps (action_optimizer.num_steps=0), from the same SFT policy
        and pre-trained critic (loaded from the class's run dirs when not given: the ablation's own process)."""
        from vla_parl.recipes.parl import ParlRecipe

        cfg, root = self.cfg, self._root(seed, kind)
        prefix = "" if kind == "openvla" else f"{kind}/"
        t = time.perf_counter()
        if sft_model is None:
            sft_model = self._policy_model(kind, root / "sft" / "final" / "model")
        if critic is None:
            critic = self._load_critic(kind, sft_model, root)
        if episodes is None:
            _reuse_demo_buffer(root / "critic", root / "parl_no_local_steps")

        def ablation_hook(stage: str, policy: Any) -> None:
            if stage == "online" or cfg.online.rounds == 0:
                self.evaluate_phase(seed, kind, "no_local_steps", policy, ablation.policy_update.operator)

        ablation = ParlRecipe(self.parl_config(seed, num_steps=0, kind=kind), root / "parl_no_local_steps",
                              resume=self.resume, policy_model=copy.deepcopy(sft_model), critic=copy.deepcopy(critic),
                              episodes=episodes, on_stage_end=ablation_hook)
        ablation.setup()
        ablation.train()
        ablation.cleanup()
        self._import_metrics(root / "parl_no_local_steps", seed=seed, run=f"{prefix}parl_no_local_steps")
        self._timed(seed, f"{prefix}ablation_no_local_steps", t)
        self._save_state()

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
        before, after = "openvla/sft/policy", "openvla/online/operator"
        if before in self.frames and after in self.frames:
            write_rollout_gif(self.run_dir / "rollouts_before_after.gif", self.frames[before], self.frames[after],
                              labels=("SFT", "online PA-RL + operator"),
                              successes=(self.frame_successes[before], self.frame_successes[after]))
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


def _worker(config: dict[str, Any], run_dir: str, seed: int, kind: str, resume: bool, job: str) -> None:
    """A spawned process's body for one seed: job "phases" runs one policy class's phases, its state in
    the class's phase root (`_root`: seed_<s>/ for OpenVLA, seed_<s>/<kind>/ for the others, where `_join_worker`
    reads it); job "ablation" runs that class's no-local-steps ablation, its state in the ablation dir."""
    from vla_parl.config.schema import from_dict

    recipe = DemoRecipe(from_dict(DemoRecipeConfig, config), run_dir, resume=resume)
    if job == "phases":
        recipe.state_dir, body = recipe._root(seed, kind), recipe.run_policy
    else:
        recipe.state_dir, body = recipe._ablation_dir(seed, kind), recipe.run_ablation
    recipe.setup()
    try:
        body(seed, kind)
    finally:
        recipe.cleanup()


def _reuse_demo_buffer(source_run: Path, run: Path) -> None:
    """Give `run` a copy of `source_run`'s finished demo buffer (`data/offline`, the same seed's episodes with the same
    statistics and γ), so a phase in another process does not generate the demos again."""
    source, target = source_run / "data" / "offline", run / "data" / "offline"
    if (source / "complete").is_file() and not (target / "complete").is_file():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        print(f"{run.name}: reuses the demo buffer of {source_run}", flush=True)


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
