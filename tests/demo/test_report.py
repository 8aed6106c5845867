"""Wilson intervals and the demo's summary/report, on hand-computed numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vla_parl.demo.report import write_report, write_rollout_gif, write_summary
from vla_parl.eval.tabletop import EvalResult, wilson_interval


def test_wilson_interval_matches_the_formula():
    # p = 0.5, n = 10, z = 1.96: centre = (0.5 + 0.19208) / 1.38416 = 0.5;
    # half = 1.96 * sqrt(0.025 + 0.0096040) / 1.38416 = 0.26340  →  (0.2366, 0.7634)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    # 0 of 20: low = 0, high = z² / n / (1 + z² / n) = 0.19208 / 1.19208 = 0.16113
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.16113, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


SFT, ONLINE, ONLINE_OP, VGPS = ("openvla/sft/policy", "openvla/online/policy", "openvla/online/operator",
                                "openvla/vgps/operator")


def _row(successes, n=10):
    return EvalResult(successes=[True] * successes + [False] * (n - successes), lengths=[5] * n).summary()


def test_summary_pools_seeds_and_reports_the_gain(tmp_path):
    results = {0: {SFT: _row(3), ONLINE: _row(6), ONLINE_OP: _row(9), VGPS: _row(7)},
               1: {SFT: _row(4), ONLINE: _row(8), ONLINE_OP: _row(10), VGPS: _row(8)}}
    wall = {0: {"sft": 10.0, "parl_total": 20.0}, 1: {"sft": 11.0, "parl_total": 21.0}}
    summary = write_summary(tmp_path / "summary.json", {"seeds": [0, 1]}, results, wall, 62.0)
    assert summary["mean"][SFT]["successes"] == 7 and summary["mean"][SFT]["episodes"] == 20
    assert summary["mean"][ONLINE]["seed_mean"] == pytest.approx(0.7)
    assert summary["online_minus_sft_points"] == {"openvla": pytest.approx(35.0)}   # (0.6 + 0.8)/2 − (0.3 + 0.4)/2
    assert summary["online_operator_minus_vgps_points"] == {"openvla": pytest.approx(20.0)}   # 0.95 − 0.75
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["total_wall_time_s"] == 62.0 and set(saved["mean"]) == {SFT, ONLINE, ONLINE_OP, VGPS}
    assert all({"success_rate", "seed_mean"} <= set(v) for v in saved["mean"].values())
    write_report(tmp_path / "report.md", summary, "vla-parl run demo seeds=[0,1]", ["note"])
    text = (tmp_path / "report.md").read_text()
    assert "| tiny OpenVLA: online PA-RL, policy alone | 60% (6/10; 31–83) | 80% (8/10; 49–94) | 70.0% |" in text
    assert "| tiny OpenVLA: online PA-RL, policy + operator | 90% (9/10; 60–98) | 100% (10/10; 72–100) | 95.0% |" in text
    assert "+35.0 points" in text and "+20.0 points" in text


def test_row_keys_are_policy_phase_acting():
    from vla_parl.demo.report import ROWS, row_key

    assert row_key("diffusion", "online", "policy") == "diffusion/online/policy"
    assert "openvla/vgps/policy" not in ROWS     # V-GPS is the operator over the SFT policy, by definition
    with pytest.raises(ValueError, match="no demo row"):
        row_key("openvla", "online", "greedy")


def test_rollout_gif_pads_shorter_episodes_and_captions_each_panel(tmp_path):
    import imageio.v2 as imageio

    from vla_parl.demo.report import CAPTION_HEIGHT

    before = [np.zeros((3, 8, 8, 3), np.uint8)]
    after = [np.stack([np.full((8, 8, 3), 40 * t, np.uint8) for t in range(5)])]   # 5 distinct frames
    path = write_rollout_gif(tmp_path / "r.gif", before, after, scale=2, labels=("SFT", "PA-RL"),
                             successes=([False], [True]))
    frames = imageio.mimread(path)
    assert len(frames) == 5 and frames[0].shape[:2] == (CAPTION_HEIGHT + 16, 40)   # caption + 8 rows ×2; 8 + 4 + 8 ×2
    top = CAPTION_HEIGHT
    assert frames[-1][top, 0, 0] == 0 and frames[-1][top, -1, 0] == 160   # left padded with its last frame
    caption = frames[0][:CAPTION_HEIGHT, :, :3]
    assert (caption == 255).any() and (caption < 128).any()   # a white strip with dark text over each panel
    left, right = caption[:, :16], caption[:, 24:]
    assert not np.array_equal(left, right)       # different captions: "SFT … failure", "PA-RL … success"


def test_gifs_play_at_their_frame_rate(tmp_path):
    """Every frame carries a delay > 0 (imageio's `duration` is in ms: 0.1 meant a 0 ms delay)."""
    from PIL import Image

    from vla_parl.demo.report import GIF_FPS, save_gif

    frames = [np.full((6, 6, 3), 30 * t, np.uint8) for t in range(4)]
    for path in (write_rollout_gif(tmp_path / "pair.gif", [np.stack(frames)], [np.stack(frames[::-1])], scale=1),
                 save_gif(tmp_path / "one.gif", frames, caption="greedy, episode 0: failure")):
        with Image.open(path) as gif:
            delays = []
            for i in range(gif.n_frames):
                gif.seek(i)
                delays.append(gif.info["duration"])
        assert len(delays) == 4 and set(delays) == {1000 // GIF_FPS}, delays   # 100 ms per frame


def test_merge_runs_combines_seeds_from_separate_run_dirs(tmp_path):
    from vla_parl.demo.merge import merge_runs

    for seed, (sft, online) in {0: (2, 5), 1: (3, 7)}.items():
        run = tmp_path / f"s{seed}"
        run.mkdir()
        (run / "demo_state.json").write_text(json.dumps({"results": {str(seed): {SFT: _row(sft), ONLINE: _row(online)}},
                                                         "wall": {str(seed): {"sft": 1.0}}}))
    summary = merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    assert summary["mean"][SFT]["successes"] == 5 and summary["online_minus_sft_points"]["openvla"] == pytest.approx(35.0)
    assert "seed 0 | seed 1" in (tmp_path / "merged" / "report.md").read_text()
    assert (tmp_path / "merged" / "curves_success.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        merge_runs([tmp_path / "s0", tmp_path / "s0"], tmp_path / "again")
