"""The demo's outputs: `report.md` (success per phase with 95 % Wilson intervals), `summary.json`,
learning-curve PNGs (matplotlib, Agg) and a before/after rollout GIF (Pillow: 10 frames/s, a caption per
panel). Every plot names its units and how many episodes a success figure counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vla_parl.eval.tabletop import wilson_interval

__all__ = ["ROWS", "PHASES", "ACTING", "row_key", "setup_notes", "write_summary", "write_report", "plot_learning_curves", "write_rollout_gif",
           "save_gif", "GIF_FPS", "CAPTION_HEIGHT"]

GIF_FPS = 10            # frames per second of every rollout GIF (the simulator's control rate is not real time)
CAPTION_HEIGHT = 14     # pixels of the caption strip above each GIF panel

# row key "<policy>/<phase>/<acting>" → label, in table order. acting: "policy" = the policy alone (greedy);
# "operator" = PA-RL's improvement operator over its samples with the run's critic at that point (what the paper
# reports); the V-GPS row is the operator over the SFT policy with the pre-trained critic (no distillation)
PHASES = {
    "sft": "SFT (behaviour cloning)",
    "vgps": "ablation: V-GPS (SFT policy, pre-trained critic)",
    "offline": "offline PA-RL",
    "online": "online PA-RL",
    "no_local_steps": "ablation: online PA-RL without local gradient steps",
}
ACTING = {"policy": "policy alone", "operator": "policy + operator"}
POLICIES = {"openvla": "tiny OpenVLA", "diffusion": "diffusion policy"}
ROWS = {f"{policy}/{phase}/{acting}": f"{name}: {label}, {ACTING[acting]}"
        for policy, name in POLICIES.items() for phase, label in PHASES.items() for acting in ACTING
        if not (phase == "vgps" and acting == "policy")}


def row_key(policy: str, phase: str, acting: str) -> str:
    """The summary/report key of one evaluation row, e.g. `row_key("openvla", "online", "operator")`."""
    key = f"{policy}/{phase}/{acting}"
    if key not in ROWS:
        raise ValueError(f"no demo row {key!r}; rows: {sorted(ROWS)}")
    return key


def _pooled(results: dict[str, dict[str, Any]], row: str) -> dict[str, Any] | None:
    per_seed = [r[row] for r in results.values() if row in r]
    if not per_seed:
        return None
    successes = sum(r["successes"] for r in per_seed)
    episodes = sum(r["episodes"] for r in per_seed)
    low, high = wilson_interval(successes, episodes)
    return {"success_rate": successes / episodes, "successes": successes, "episodes": episodes,
            "interval95": [low, high], "seed_mean": float(np.mean([r["success_rate"] for r in per_seed]))}


def setup_notes(config: dict[str, Any]) -> list[str]:
    """The report's setup notes, read from the resolved config (`to_dict(DemoRecipeConfig)`)."""
    d, opt, online = config["data"], config["action_optimizer"], config["online"]
    targets = d.get("targets")
    obj = config["objective"]
    objective = {"calql": "Cal-QL", "cql": "CQL", "iql": "IQL"}[obj["objective"]]
    if obj["objective"] != "iql":
        objective += f" (conservatism α = {obj['cql_alpha']})"
    target_note = (f"the target is always the {' or '.join(targets)} block, the others are distractors"
                   if targets else "the instruction names the target block")
    return [
        f"Task: `{d['task']}` in the built-in pybullet tabletop (3 coloured blocks; {target_note}); "
        f"{d['env_image_size']} px images; {d['max_episode_steps']}-step episodes; sparse reward −1 per step, "
        "0 on success.",
        f"Demonstrations: {d['num_episodes']} episodes of the scripted expert with noise {d['expert_noise']} "
        "(Gaussian noise on the translation and random-action mistakes; the measured expert success is printed "
        "per seed).",
        "Policy: tiny OpenVLA ("
        + ("SigLIP tower alone" if config["model"].get("vision") == "siglip" else "fused DINOv2 + SigLIP towers")
        + f", tiny widths, {config['model']['image_size']} px; 2-layer Llama, real 32064-token vocabulary), "
        + ("LoRA" if config["lora"]["enabled"] else "full fine-tune (LoRA on a randomly initialised tiny model "
                                                     "learns too slowly; `lora.enabled=true` switches to LoRA)")
        + ("; its cross-entropy is taken over the 256 action-token logits the sampler draws from "
           "(`model.loss_vocab=action_tokens`)." if config["model"].get("loss_vocab") == "action_tokens"
           else "; cross-entropy over the whole vocabulary, as the official fine-tuning."),
        "Critic: asymmetric — Q(s, a) reads the simulator's target-block position, the gripper proprio and the "
        f"instruction (the policy only sees the image and the instruction); {len(config['critic']['hidden_dims'])}-layer "
        f"MLP ({'×'.join(map(str, config['critic']['hidden_dims']))}) per head, {config['critic']['num_q_heads']} heads; "
        f"{objective} pre-training on the demos.",
        f"PA-RL: N = {opt['num_samples']} policy samples per state → top-{opt['top_k']} by Q → {opt['num_steps']} "
        "local gradient-ascent steps on a → argmax; distilled with the policy's own token cross-entropy. "
        "Candidates come from a cache refreshed from the current policy (official PA-RL's caching workers). "
        f"Online: {online['rounds']} rounds of {online['episodes_per_round']} rollouts "
        + ("acting with the improvement operator over the policy's samples (as PA-RL collects)"
           if online.get("collect_with", "operator") == "operator" else "of the policy (temperature sampling)")
        + f" go to a replay buffer mixed with the offline data; per round {online['critic_steps_per_round']} "
        f"critic steps (lr {online['critic_lr'] or config['critic_optim']['lr']}) and "
        f"{online['distill_steps_per_round']} distillation steps.",
        *([f"Diffusion policy: DDPM ({dp['diffusion']['num_diffusion_steps']} denoising steps, MLP-ResNet ε-net "
           f"{dp['diffusion']['num_blocks']}×{dp['diffusion']['hidden_dim']}) on a ResNet-18 image encoder (base width "
           f"{dp.get('image_width', 64)}) trained from "
           f"scratch at {dp['image_size']} px (+ proprio), behaviour-cloned for {ds['steps']} steps, then the same "
           "critic recipe and PA-RL schedule as the OpenVLA, distilled with its own ε-prediction loss; alone it acts "
           "with one DDPM sample per step."]
          if "diffusion" in config.get("policies", []) and (dp := config["diffusion"]["policy"])
          and (ds := config["diffusion"]["sft"]) else []),
        f"Evaluation: {config['eval']['episodes']} seeded episodes per row, each phase twice: the policy alone "
        "(OpenVLA: greedy decoding) and policy + operator (the improvement operator over its samples with the run's critic "
        "at that point, argmax: what the PA-RL paper reports); the V-GPS row is the operator over the SFT policy "
        "with the pre-trained critic.",
    ]


def write_summary(path: Path, config: dict[str, Any], results: dict[str, dict[str, Any]],
                  wall: dict[str, dict[str, float]], total_wall: float) -> dict[str, Any]:
    """results: seed → row → EvalResult.summary(); wall: seed → phase → seconds."""
    summary = {
        "seeds": {str(seed): {"phases": rows, "wall_time_s": wall.get(seed, {})} for seed, rows in results.items()},
        "mean": {row: pooled for row in ROWS if (pooled := _pooled(results, row)) is not None},
        "total_wall_time_s": total_wall,
        "config": config,
    }
    mean = summary["mean"]
    for policy in POLICIES:   # the policy alone after online PA-RL vs its SFT, and the operator vs V-GPS
        sft, online = mean.get(f"{policy}/sft/policy"), mean.get(f"{policy}/online/policy")
        if sft and online:
            summary.setdefault("online_minus_sft_points", {})[policy] = 100 * (online["seed_mean"] - sft["seed_mean"])
        vgps, operator = mean.get(f"{policy}/vgps/operator"), mean.get(f"{policy}/online/operator")
        if vgps and operator:
            summary.setdefault("online_operator_minus_vgps_points", {})[policy] = 100 * (operator["seed_mean"]
                                                                                      - vgps["seed_mean"])
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _cell(result: dict[str, Any]) -> str:
    low, high = result["interval95"]
    return f"{100 * result['success_rate']:.0f}% ({result['successes']}/{result['episodes']}; {100 * low:.0f}–{100 * high:.0f})"


def write_report(path: Path, summary: dict[str, Any], command: str, notes: list[str]) -> None:
    seeds = list(summary["seeds"])
    lines = ["# vla-parl demo: PA-RL on the tiny OpenVLA in the built-in simulator", "",
             f"Command: `{command}`", "",
             "Success rate per phase on a fixed set of seeded evaluation episodes "
             "(cells: rate (successes/episodes; 95 % Wilson interval)).", "",
             "| phase | " + " | ".join(f"seed {s}" for s in seeds) + " | mean over seeds | pooled (95 % CI) |",
             "|---|" + "---|" * (len(seeds) + 2)]
    for row, label in ROWS.items():
        if row not in summary["mean"]:
            continue
        cells = [(_cell(summary["seeds"][s]["phases"][row]) if row in summary["seeds"][s]["phases"] else "–")
                 for s in seeds]
        pooled = summary["mean"][row]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {100 * pooled['seed_mean']:.1f}% | {_cell(pooled)} |")
    for policy, points in summary.get("online_minus_sft_points", {}).items():
        lines += ["", f"{POLICIES[policy]}: online PA-RL − SFT, policy alone: **{points:+.1f} points** (mean over seeds)."]
    for policy, points in summary.get("online_operator_minus_vgps_points", {}).items():
        lines += [f"{POLICIES[policy]}: online PA-RL + operator − V-GPS: **{points:+.1f} points** (mean over seeds)."]
    lines += ["", "## Wall time per phase (seconds)", "",
              "| seed | " + " | ".join(next(iter(summary["seeds"].values()))["wall_time_s"]) + " |",
              "|---|" + "---|" * len(next(iter(summary["seeds"].values()))["wall_time_s"])]
    for s in seeds:
        lines.append(f"| {s} | " + " | ".join(f"{v:.0f}" for v in summary["seeds"][s]["wall_time_s"].values()) + " |")
    lines += ["", f"Total: {summary['total_wall_time_s']:.0f} s.", "", "## Setup", ""] + [f"- {n}" for n in notes]
    lines += ["", "Files: `summary.json`, `metrics.jsonl`, `curves_*.png`, `rollouts_before_after.gif`, "
              "`final/model` (merged, `OpenVLA.from_pretrained`-loadable), `final/critic` (`QCritic.load`).", ""]
    Path(path).write_text("\n".join(lines))


def plot_learning_curves(records: list[dict[str, Any]], summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """curves_training.png (losses per phase, per seed) and curves_success.png (success per phase)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    config = summary.get("config") or {}
    objective = {"calql": "Cal-QL", "cql": "CQL", "iql": "IQL"}.get((config.get("objective") or {}).get("objective"),
                                                                    "Cal-QL")
    per_round = (config.get("online") or {}).get("episodes_per_round")
    n_round = f"n = {per_round} episodes per round" if per_round else "per round"
    # key, title, x axis, y scale: every x counts the updates of that curve's own run
    panels = [("sft/loss", "SFT loss (action-token cross-entropy)", "optimizer steps", 1.0),
              ("critic/loss", f"critic loss ({objective})", "critic updates", 1.0),
              ("policy/distill_loss", "PA-RL distillation loss (cross-entropy)", "distillation steps", 1.0),
              ("online/collect_success", f"online rollout success, % ({n_round})", "online round", 100.0)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6))
    for ax, (key, title, xlabel, scale) in zip(axes, panels):
        # one line per (seed, run): e.g. the critic's pre-training and its PA-RL updates are separate curves
        lines = sorted({(r.get("seed", 0), r.get("run", "")) for r in records if r.get(key) is not None})
        for seed, run in lines:
            points = [(r["step"], scale * r[key]) for r in records
                      if r.get(key) is not None and r.get("seed", 0) == seed and r.get("run", "") == run]
            xs, ys = zip(*points)
            ax.plot(xs, ys, label=f"seed {seed} {run}", lw=1.2, marker="." if len(points) < 8 else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"{xlabel} (per run)")
        if scale == 100.0:
            ax.set_ylim(0, 100)
        if lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    training = out_dir / "curves_training.png"
    fig.savefig(training, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9.0, 4.0))
    rows = [row for row in ROWS if row in summary["mean"]]
    means = [100 * summary["mean"][row]["success_rate"] for row in rows]
    errs = np.array([[100 * (summary["mean"][r]["success_rate"] - summary["mean"][r]["interval95"][0]) for r in rows],
                     [100 * (summary["mean"][r]["interval95"][1] - summary["mean"][r]["success_rate"]) for r in rows]])
    short = {"sft": "SFT", "offline": "offline", "online": "online", "vgps": "V-GPS", "no_local_steps": "no local"}
    colours = {"sft": "#888", "vgps": "#b86", "offline": "#6a9", "online": "#2a7", "no_local_steps": "#a8c"}
    phases = [row.split("/") for row in rows]
    ax.bar(range(len(rows)), means, yerr=errs, capsize=4, color=[colours[phase] for _, phase, _ in phases],
           edgecolor="black", linewidth=[1.5 if acting == "operator" else 0.0 for _, _, acting in phases])
    for i, row in enumerate(rows):   # successes / episodes on each bar
        pooled = summary["mean"][row]
        ax.annotate(f"{pooled['successes']}/{pooled['episodes']}", (i, means[i]), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=7)
    multi = len({policy for policy, _, _ in phases}) > 1
    ax.set_xticks(range(len(rows)), [(f"{policy}\n" if multi else "") + short[phase] + ("\n+op" if acting == "operator"
                                      else "") for policy, phase, acting in phases], fontsize=7)
    ax.set_ylabel("success (% of episodes)")
    ax.set_ylim(0, 100)
    episodes = sorted({summary["mean"][r]["episodes"] for r in rows})
    n = "/".join(str(e) for e in episodes)
    seeds = len(summary.get("seeds", {})) or 1
    ax.set_title(f"success per phase (outlined: policy + operator): n = {n} episodes per bar ({seeds} "
                 f"seed{'s' if seeds > 1 else ''} pooled); error bars: 95 % Wilson interval", fontsize=8)
    fig.tight_layout()
    success = out_dir / "curves_success.png"
    fig.savefig(success, dpi=110)
    plt.close(fig)
    return [training, success]


def _caption(width: int, text: str) -> np.ndarray:
    """A white strip `CAPTION_HEIGHT` high holding `text` in black (Pillow's built-in font)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, CAPTION_HEIGHT), (255, 255, 255))
    ImageDraw.Draw(strip).text((2, 1), text, fill=(0, 0, 0))
    return np.asarray(strip)


def save_gif(path: Path, frames: list[np.ndarray], *, caption: str | None = None, fps: int = GIF_FPS,
             scale: int = 1) -> Path:
    """Write uint8 H×W×3 `frames` as a looping GIF at `fps` (each frame's delay is 1000/fps ms), upscaled by
    `scale` (nearest), with `caption` in a strip above them."""
    frames = [np.repeat(np.repeat(f, scale, 0), scale, 1) for f in frames]
    if caption is not None:
        strip = _caption(frames[0].shape[1], caption)
        frames = [np.concatenate([strip, f], axis=0) for f in frames]
    return _write_gif(path, frames, fps)


def _write_gif(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    from PIL import Image

    if not frames:
        raise ValueError("a GIF needs at least one frame")
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    tmp.replace(path)
    return Path(path)


def write_rollout_gif(path: Path, before: list[np.ndarray], after: list[np.ndarray], scale: int = 4, *,
                      labels: tuple[str, str] = ("before", "after"),
                      successes: tuple[list[bool], list[bool]] | None = None, fps: int = GIF_FPS) -> Path:
    """Side-by-side GIF: left the policy before (SFT), right after (PA-RL), the same seeded episodes one after
    the other. Each panel carries a caption: its label, the episode and (given `successes`) its outcome."""
    frames = []
    for i, (left, right) in enumerate(zip(before, after)):
        length = max(len(left), len(right))
        panels = []
        for side, (label, episode) in enumerate(zip(labels, (left, right))):
            episode = np.concatenate([episode, np.repeat(episode[-1:], length - len(episode), 0)])
            episode = np.repeat(np.repeat(episode, scale, 1), scale, 2)
            outcome = "" if successes is None else (": success" if successes[side][i] else ": failure")
            strip = _caption(episode.shape[2], f"{label}, ep {i + 1}{outcome}")
            panels.append(np.concatenate([np.repeat(strip[None], length, 0), episode], axis=1))
        gap = np.full((length, panels[0].shape[1], 4 * scale, 3), 255, np.uint8)
        frames += list(np.concatenate([panels[0], gap, panels[1]], axis=2))
    return _write_gif(path, frames, fps)
