"""Success per policy version of the episodes robots stored through the policy server (`vla-parl robot report`).

The online PA-RL loop's learning curve: `vla-parl serve --episodes DIR` stores every finished episode with
the policy version that served each step, and the learner publishes v1, v2, ... An episode counts under the
version that served its first step (as `GET /v1/episodes` and the learner's `online/collect_success/v<k>`
count it); uploaded episodes (teleoperation, another controller) have no version and form their own row.
Only the episodes' meta.json files are read, so a large store costs little.

    rows = success_by_policy_version("runs/robot/episodes")
    plot_success_by_version(rows, "success.png")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["success_by_policy_version", "plot_success_by_version"]


def success_by_policy_version(episodes_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per policy version, oldest first, uploads last: {"policy_version": int | None, "episodes",
    "labelled" (episodes with a success label), "successes", "success_rate" (of the labelled; None if none)}."""
    from vla_parl.data import ReplayBuffer
    from vla_parl.errors import ConfigError

    if not (Path(episodes_dir) / "buffer.json").is_file():
        raise ConfigError(f"{episodes_dir} holds no stored episodes: pass the server's --episodes DIR "
                          "(`vla-parl serve ... --episodes DIR`)")
    table: dict[int | None, list[int]] = {}
    with ReplayBuffer(episodes_dir, readonly=True) as store:
        for eid in store.episode_ids:
            info = store.episode(eid)["meta"].get("info") or {}
            versions = info.get("policy_versions") or [None]
            row = table.setdefault(versions[0], [0, 0, 0])
            success = info.get("success")
            row[0] += 1
            row[1] += success is not None
            row[2] += bool(success)
    order = sorted((v for v in table if v is not None)) + ([None] if None in table else [])
    return [{"policy_version": v, "episodes": table[v][0], "labelled": table[v][1], "successes": table[v][2],
             "success_rate": table[v][2] / table[v][1] if table[v][1] else None} for v in order]


def plot_success_by_version(rows: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """A bar per policy version (success % of its labelled episodes, successes/labelled on the bar); a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["upload" if r["policy_version"] is None else f"v{r['policy_version']}" for r in rows]
    rates = [100 * (r["success_rate"] or 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(rows) + 2), 3.6))
    ax.bar(range(len(rows)), rates, color="#2a7")
    for i, row in enumerate(rows):
        ax.annotate(f"{row['successes']}/{row['labelled']}", (i, rates[i]), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=8)
    ax.set_xticks(range(len(rows)), names)
    ax.set(ylim=(0, 100), xlabel="policy version (v0: the served checkpoint)",
           ylabel="success (% of labelled episodes)")
    ax.set_title(title or "robot episodes: success per policy version", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
