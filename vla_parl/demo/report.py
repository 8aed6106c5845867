"""The demo's outputs: `report.md` (success per phase with 95 % Wilson intervals), `summary.json`,
learning-curve PNGs (matplotlib, Agg) and a before/after rollout GIF (imageio)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vla_parl.eval.tabletop import wilson_interval

__all__ = ["ROWS", "write_summary", "write_report", "plot_learning_curves", "write_rollout_gif"]

# row key → label, in table order
ROWS = {
    "sft": "SFT (behaviour cloning)",
    "offline": "offline PA-RL",
    "online": "online PA-RL",
    "vgps": "ablation: re-ranking only at inference (V-GPS-style, SFT policy)",
    "no_local_steps": "ablation: PA-RL without local gradient steps (online)",
}


def _pooled(results: dict[str, dict[str, Any]], row: str) -> dict[str, Any] | None:
    per_seed = [r[row] for r in results.values() if row in r]
    if not per_seed:
        return None
    successes = sum(r["successes"] for r in per_seed)
    episodes = sum(r["episodes"] for r in per_seed)
    low, high = wilson_interval(successes, episodes)
    return {"success_rate": successes / episodes, "successes": successes, "episodes": episodes,
            "interval95": [low, high], "seed_mean": float(np.mean([r["success_rate"] for r in per_seed]))}


def write_summary(path: Path, config: dict[str, Any], results: dict[str, dict[str, Any]],
                  wall: dict[str, dict[str, float]], total_wall: float) -> dict[str, Any]:
    """results: seed → row → EvalResult.summary(); wall: seed → phase → seconds."""
    summary = {
        "seeds": {str(seed): {"phases": rows, "wall_time_s": wall.get(seed, {})} for seed, rows in results.items()},
        "mean": {row: pooled for row in ROWS if (pooled := _pooled(results, row)) is not None},
        "total_wall_time_s": total_wall,
        "config": config,
    }
    if "sft" in summary["mean"] and "online" in summary["mean"]:
        summary["online_minus_sft_points"] = 100 * (summary["mean"]["online"]["seed_mean"]
                                                     - summary["mean"]["sft"]["seed_mean"])
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
    if "online_minus_sft_points" in summary:
        lines += ["", f"Online PA-RL − SFT: **{summary['online_minus_sft_points']:+.1f} points** (mean over seeds)."]
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
    panels = [("sft/loss", "SFT loss"), ("critic/loss", "critic loss (Cal-QL)"),
              ("policy/distill_loss", "PA-RL distillation loss"), ("online/collect_success", "online rollout success")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, title) in zip(axes, panels):
        # one line per (seed, run): e.g. the critic's pre-training and its PA-RL updates are separate curves
        lines = sorted({(r.get("seed", 0), r.get("run", "")) for r in records if r.get(key) is not None})
        for seed, run in lines:
            points = [(r["step"], r[key]) for r in records
                      if r.get(key) is not None and r.get("seed", 0) == seed and r.get("run", "") == run]
            xs, ys = zip(*points)
            ax.plot(xs, ys, label=f"seed {seed} {run}", lw=1.2, marker="." if len(points) < 8 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step (per run)")
        if lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    training = out_dir / "curves_training.png"
    fig.savefig(training, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.6))
    rows = [row for row in ROWS if row in summary["mean"]]
    means = [100 * summary["mean"][row]["success_rate"] for row in rows]
    errs = np.array([[100 * (summary["mean"][r]["success_rate"] - summary["mean"][r]["interval95"][0]) for r in rows],
                     [100 * (summary["mean"][r]["interval95"][1] - summary["mean"][r]["success_rate"]) for r in rows]])
    ax.bar(range(len(rows)), means, yerr=errs, capsize=4, color=["#888", "#6a9", "#2a7", "#b86", "#a8c"][:len(rows)])
    ax.set_xticks(range(len(rows)), ["SFT", "offline", "online", "V-GPS", "no local"][:len(rows)])
    ax.set_ylabel("success %")
    ax.set_ylim(0, 100)
    ax.set_title("success per phase (pooled over seeds, 95 % Wilson)")
    fig.tight_layout()
    success = out_dir / "curves_success.png"
    fig.savefig(success, dpi=110)
    plt.close(fig)
    return [training, success]


def write_rollout_gif(path: Path, before: list[np.ndarray], after: list[np.ndarray], scale: int = 4) -> Path:
    """Side-by-side GIF: left the SFT policy, right the PA-RL policy, same seeded episodes."""
    import imageio.v2 as imageio

    pairs = list(zip(before, after))
    frames = []
    for left, right in pairs:
        length = max(len(left), len(right))
        left = np.concatenate([left, np.repeat(left[-1:], length - len(left), 0)])
        right = np.concatenate([right, np.repeat(right[-1:], length - len(right), 0)])
        gap = np.full((length, left.shape[1], 4, 3), 255, np.uint8)
        frames += list(np.concatenate([left, gap, right], axis=2))
    frames = [np.repeat(np.repeat(f, scale, 0), scale, 1) for f in frames]
    imageio.mimsave(path, frames, duration=0.1, loop=0)
    return Path(path)
