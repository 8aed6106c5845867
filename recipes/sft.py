"""Behaviour cloning of OpenVLA (LoRA or full fine-tune) on tabletop demos, RLDS, LeRobotDataset or CALVIN data.

    vla-parl run sft --config sft_tabletop --output-dir runs/sft
    vla-parl run sft --config sft_bridge_7b data.path=/data/oxe
    vla-parl run sft --output-dir runs/sft_diffusion policy.type=diffusion    # or gaussian: BC of another class
    accelerate launch --config_file <configs/accelerate/ddp.yaml> -m vla_parl.recipes.sft --config sft_bridge_7b
    accelerate launch --config_file <configs/accelerate/fsdp.yaml> -m vla_parl.recipes.sft ...   # FSDP2 (also CPU)

Data on disk (rlds, lerobot, calvin) is streamed step by step (`vla_parl.data.loader.StepStream`: DataLoader
workers, per-rank shards, `data.shuffle_buffer` as the memory bound); `data.image_aug` adds OpenVLA's augmentation.
Loss: the official OpenVLA fine-tuning loss — cross-entropy on the 7 action tokens plus EOS, actions
normalised with the dataset's q01/q99 statistics (saved into the model, so serving un-normalises alike).
policy.type=diffusion | gaussian: the same data and action normalisation, that class's own loss (DDPM ε-MSE | NLL) and
network on a ResNet-18 image encoder (`vla_parl.training.builders.build_bc_policy`); `final/model` is then its
`Policy.save` directory (with the statistics and a manifest), which `run critic` / `run parl` load with `policy=DIR`.
Output: `<run>/final/model` (LoRA merged; `OpenVLA.from_pretrained`-loadable) and, with LoRA, the adapter
`<run>/final/adapter`; checkpoints under `<run>/checkpoints/` (adapter or weights and optimizer as DCP
shards, sampler RNG), `metrics.jsonl`, `config.yaml`. With W processes one step is one global batch of
`optim.batch_size × W` samples, split over the ranks (`vla_parl.training.parallel`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_parl.config.schema import to_yaml
from vla_parl.models.openvla.normalization import ActionNormalizer
from vla_parl.recipes._configs import SFTRecipeConfig
from vla_parl.training.builders import build_model, make_accelerator, resume_and_open_logger
from vla_parl.training.checkpointing import CheckpointManager, rng_state, set_rng_state
from vla_parl.training.data import (batch_to_observation, dataset_statistics, episode_statistics, load_episodes,
                                     open_offline_buffer)
from vla_parl.training.parallel import (check_global_batch, export_policy, load_policy_state, local_rows,
                                        mean_over_ranks, prepare_policy, save_policy_state, take_rows)
from vla_parl.training.optimizers import adamw
from vla_parl.utils.files import atomic_write_text

__all__ = ["SFTRecipe", "main"]


class SFTRecipe:
    def __init__(self, cfg: SFTRecipeConfig, run_dir: str | Path, *, resume: bool = False,
                 episodes: list[dict[str, Any]] | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self._episodes = episodes
        self.step = 0

    # ---- setup: accelerator → data statistics → model (+LoRA) → FSDP2/DDP + optimizer → resume ----------
    def setup(self) -> None:
        cfg = self.cfg
        self.accelerator = make_accelerator(cfg.run, cfg.optim.grad_accum)
        main = self.accelerator.is_main_process
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", to_yaml(cfg))
        torch.manual_seed(cfg.run.seed)
        stats_path = self.run_dir / "data" / "statistics.json"
        # a dataset on disk is streamed (bounded memory); tabletop demos (generated) go through a replay buffer
        self.streaming = cfg.data.kind != "tabletop" and self._episodes is None
        with self.accelerator.main_process_first():  # the main rank reads the data once; the others reuse it
            if (main and not self.streaming and self._episodes is None
                    and not (self.run_dir / "data" / "offline" / "complete").is_file()):
                self._episodes = load_episodes(cfg.data, progress=cfg.run.progress)
            if stats_path.is_file():
                from vla_parl.data import load_statistics

                stats = load_statistics(stats_path)
            else:
                from vla_parl.data import save_statistics

                stats = (dataset_statistics(cfg.data, cfg.model.unnorm_key) if self.streaming
                         else episode_statistics(self._episodes, cfg.model.unnorm_key))
                save_statistics(stats_path, stats)
            self.normalize = ActionNormalizer.from_norm_stats(stats, cfg.model.unnorm_key).normalize
            self.buffer = None if self.streaming else open_offline_buffer(
                self.run_dir / "data" / "offline", lambda: self._episodes, self.normalize, cfg.data.gamma,
                readonly=not main)
        self.stats = stats
        self.openvla = cfg.policy.type == "openvla"     # else BC of a diffusion / Gaussian policy (policy.type)
        self.model = (build_model(cfg.model, norm_stats=stats, device=self.accelerator.device) if self.openvla
                      else self._build_bc_policy())
        if cfg.lora.enabled and self.openvla:
            from vla_parl.models.openvla.lora import apply_lora

            apply_lora(self.model, cfg.lora)
        self.core = self.model
        # data.image_aug: OpenVLA's training augmentation; the model records it (serving then centre-crops)
        self.augmentation = self._record_augmentation(self.model)
        self.aug_rng = np.random.default_rng([cfg.run.seed, 1])
        self._episodes = None

        def optimizer() -> torch.optim.Optimizer:   # over the sharded parameters under FSDP2
            return adamw([p for p in self.core.parameters() if p.requires_grad], lr=cfg.optim.lr,
                         weight_decay=cfg.optim.weight_decay)

        self.model, self.optimizer, self.sharded = prepare_policy(self.accelerator, self.model, cfg.run, optimizer)
        # the same generator on every rank: all draw the global batch, each trains on its own rows
        self.rng = np.random.default_rng([cfg.run.seed, 0])
        self._batches = self._step_batches() if self.streaming else None
        self.checkpoints = CheckpointManager(self.run_dir, keep=cfg.run.keep_checkpoints)
        self.logger, _ = resume_and_open_logger(self.accelerator, self.checkpoints, self.run_dir, cfg, self.resume,
                                               self._load_checkpoint)

    def _load_checkpoint(self, path: Path) -> int:
        load_policy_state(path / "policy", self.model, self.optimizer)   # any world size → this one
        state = self.checkpoints.load(path)
        set_rng_state(self.rng, state["sampler_rng"])
        if "aug_rng" in state:
            set_rng_state(self.aug_rng, state["aug_rng"])
        if self._batches is not None and state.get("stream"):
            from vla_parl.data.loader import resume_batches

            resume_batches(self._batches, state["stream"])
        self.step = state["step"]
        check_global_batch(state, self.cfg.optim.batch_size * self.accelerator.num_processes, "optim.batch_size")
        return self.step

    # ---- train ---------------------------------------------------------------------------------------------------

    def _record_augmentation(self, model: Any) -> Any:
        """`ImageAugmentation` when data.image_aug (recorded in `model`'s processor), else None."""
        if not self.cfg.data.image_aug:
            return None
        from vla_parl.models.openvla.image_transforms import ImageAugmentation

        augmentation = ImageAugmentation()
        model.processor.image_transform.record_augmentation(augmentation)
        return augmentation

    def _build_bc_policy(self) -> Any:
        """policy.type diffusion | gaussian: a new policy on this data's action dims and (replay data) proprio."""
        from vla_parl.training.builders import build_bc_policy
        from vla_parl.training.parallel import fsdp_requested

        if self.accelerator.num_processes > 1 and fsdp_requested(self.cfg.run):
            from vla_parl.errors import ConfigError

            raise ConfigError(f"FSDP2 shards OpenVLA's blocks; a {self.cfg.policy.type} policy is small enough to "
                              f"replicate: launch with configs/accelerate/ddp.yaml (and run.distributed=auto)")
        stats = self.stats[self.cfg.model.unnorm_key]
        proprio_dim = 0 if self.streaming or "proprio" not in stats else len(stats["proprio"]["mean"])
        return build_bc_policy(self.cfg.policy, action_dim=len(stats["action"]["q01"]), proprio_dim=proprio_dim,
                               norm_stats=self.stats, unnorm_key=self.cfg.model.unnorm_key).to(self.accelerator.device)

    def loss(self, batch: dict[str, Any]) -> Any:
        """Cross-entropy on the action tokens of the (normalised) dataset actions, through the prepared model;
        a diffusion / Gaussian policy: its own supervised loss (ε-MSE / NLL, a `PolicyLoss`) on them."""
        obs = batch_to_observation(batch["obs"], use_state=False)
        if not self.openvla:
            device = self.accelerator.device
            return self.model(obs.to(device), torch.from_numpy(batch["action"]).to(device))
        tokens = self.core.action_tokenizer.encode(torch.from_numpy(batch["action"]))
        images = list(obs.images.numpy())
        pixel_values = (self.core.processor.augmented_pixel_values(images, self.augmentation, self.aug_rng)
                        if self.augmentation is not None else None)
        inputs = self.core.processor.training_batch(images, obs.instructions, tokens,
                                                    pixel_values=pixel_values).to(self.accelerator.device)
        return self.model(inputs.input_ids, inputs.pixel_values, inputs.attention_mask, labels=inputs.labels)

    def train(self) -> None:
        cfg = self.cfg
        self.model.train()
        total = cfg.optim.steps
        stop = total if cfg.run.stop_after is None else min(total, cfg.run.stop_after)
        progress = _progress(cfg.run.progress and self.accelerator.is_main_process, total, self.step, "sft")
        global_batch = cfg.optim.batch_size * self.accelerator.num_processes
        rows = local_rows(global_batch)
        while self.step < stop:
            start = time.perf_counter()
            for _ in range(cfg.optim.grad_accum):
                batch = (self._stream_batch() if self.streaming
                         else take_rows(self.buffer.sample(global_batch, self.rng), rows))
                with self.accelerator.accumulate(self.model), self.accelerator.autocast():
                    out = self.loss(batch)
                    self.accelerator.backward(out.loss)
                    if self.accelerator.sync_gradients and cfg.optim.max_grad_norm:
                        self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.optim.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            progress.update(1)
            if self.step % cfg.run.log_every == 0 or self.step == total:
                stats = mean_over_ranks({"sft/loss": float(out.loss.detach()),      # the global batch's means
                                         **self._loss_stats(out)})
                self.logger.log(self.step, {**stats, "sft/step_time": time.perf_counter() - start}, phase="sft")
                progress.set_postfix(loss=f"{stats['sft/loss']:.4f}", refresh=False)
            if self.step % cfg.run.checkpoint_every == 0 or self.step == total:
                self.save_checkpoint()
        progress.close()

    def _loss_stats(self, out: Any) -> dict[str, float]:
        """What the loss reports beside its value: token accuracy and L1 (OpenVLA), the `PolicyLoss` stats."""
        if not self.openvla:
            return {f"sft/{name}": value for name, value in out.stats.items()}
        return {"sft/action_accuracy": float(out.action_accuracy), "sft/action_l1": float(out.action_l1)}

    def _step_batches(self) -> Any:
        """This rank's endless stream of `optim.batch_size` steps from its share of the dataset (`StepBatches`)."""
        from vla_parl.data.loader import StepBatches
        from vla_parl.data.sources import OfflineSource

        cfg = self.cfg
        return StepBatches(OfflineSource(cfg.data), batch_size=cfg.optim.batch_size, num_workers=cfg.data.num_workers,
                           shuffle_buffer=cfg.data.shuffle_buffer, seed=cfg.run.seed)

    def _stream_batch(self) -> dict[str, Any]:
        """The next streamed batch, actions normalised. Epochs follow on; the stream's position is checkpointed, so
        a resumed run continues with exactly the batches the uninterrupted run would have taken."""
        b = next(self._batches)
        return {"obs": {"image": b["image"], "instruction": b["instruction"]}, "action": self.normalize(b["action"])}

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Every rank: the policy's trainable weights + optimizer as DCP shards (`policy/`); the main rank the
        rest. Published atomically once all ranks have written (`CheckpointManager`)."""
        def write(tmp: Path) -> None:
            (tmp / "config.yaml").write_text(to_yaml(self.cfg))

        global_batch = self.cfg.optim.batch_size * self.accelerator.num_processes
        extra = {"aug_rng": rng_state(self.aug_rng)}
        if self._batches is not None:   # every rank's stream position (a collective under several processes)
            from vla_parl.data.loader import gather_states

            extra["stream"] = gather_states(self._batches.state())
        self.checkpoints.save(self.step, write, {"sampler_rng": rng_state(self.rng), "phase": "sft",
                                                 "global_batch": global_batch, **extra},
                              sharded=lambda tmp: save_policy_state(tmp / "policy", self.model, self.optimizer))

    def export(self, directory: Path | None = None) -> Path:
        """The servable model `<run>/final/model` (LoRA merged) and, with LoRA, `<run>/final/adapter`.

        One process or DDP: merged in place on the main rank. FSDP2: only the adapters are gathered, to
        rank 0, which merges them once into the base rebuilt from `model` (see `export_policy`)."""
        directory = directory or self.run_dir / "final" / "model"
        if not self.openvla:   # config.json (class, encoder, statistics), weights, manifest.json
            if self.accelerator.is_main_process:
                self.accelerator.unwrap_model(self.model).save(directory)
            self.accelerator.wait_for_everyone()
            return directory
        export_policy(self.model, directory, sharded=self.sharded, is_main=self.accelerator.is_main_process,
                      rebuild_base=lambda: self._with_augmentation(build_model(self.cfg.model, norm_stats=self.stats,
                                                                               device="cpu")),
                      adapter_dir=directory.parent / "adapter")
        if self.accelerator.is_main_process:
            from vla_parl.models.openvla.model_card import record_run
            from vla_parl.recipes._summary import final_metrics

            record_run(directory, "sft", self.cfg,
                       final_metrics(self.run_dir, ("sft/loss", "sft/action_accuracy", "sft/action_l1")))
        return directory

    def _with_augmentation(self, model: Any) -> Any:
        self._record_augmentation(model)
        return model

    def cleanup(self) -> None:
        self.logger.close()
        if self.buffer is not None:
            self.buffer.close()


def _progress(enabled: bool, total: int, initial: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def summary(recipe: SFTRecipe, wall_s: float) -> str:
    """The end-of-run summary (main rank): losses, wall time, the model and adapter, the next commands."""
    from vla_parl.recipes._summary import eval_command, print_summary

    cfg, run = recipe.cfg, recipe.run_dir
    model = run / "final" / "model"
    openvla = cfg.policy.type == "openvla"     # eval and serve take an OpenVLA; every class goes on to the critic
    outputs = {"model": model, **({"adapter": run / "final" / "adapter"} if cfg.lora.enabled and openvla else {})}
    commands = [eval_command(cfg.data, cfg.model.unnorm_key, model, run / "eval")] if openvla else []
    if cfg.data.kind == "tabletop":
        commands.append(f"vla-parl run critic --output-dir {run.parent / 'critic'} policy={model}")
    elif cfg.data.kind == "rlds":
        commands.append(f"vla-parl run critic --config critic_bridge_7b --output-dir {run.parent / 'critic'} "
                        f"data.path={cfg.data.path} policy={model}")
    if openvla:
        commands.append(f"vla-parl serve --checkpoint {model}")
    return print_summary("sft", run, done=recipe.step, total=cfg.optim.steps, unit="steps", wall_s=wall_s,
                         outputs=outputs, metric_keys=("sft/loss", "sft/action_accuracy", "sft/action_l1"),
                         next_commands=commands)


def main(cfg: SFTRecipeConfig, run_dir: str | Path, resume: bool = False) -> int:
    started = time.perf_counter()
    recipe = SFTRecipe(cfg, run_dir, resume=resume)
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

    sys.exit(run_module_main("sft"))
