"""Exact resume of SFT's step stream: a stream rebuilt from a saved position gives the batches it would have given.

The stream of each reader is a function of (seed, epoch, rank, reader); the position (epoch, batches taken per
reader, the reader due next) is saved in SFT's checkpoints, so `vla-parl run sft --resume` continues exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.data._lerobot_data import LENGTHS


def _source(path, kind: str = "lerobot", **kw):
    from vla_parl.data.sources import OfflineSource
    from vla_parl.recipes._configs import DataSection

    return OfflineSource(DataSection(kind=kind, path=str(path), **kw))


def _same_steps(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g["action"], w["action"])
        np.testing.assert_array_equal(g["image"], w["image"])
        assert g["instruction"] == w["instruction"]


@pytest.mark.parametrize("buffer", [1, 4, 64])
def test_skipping_without_decoding_equals_dropping_the_first_steps(lerobot_dirs, buffer):
    """LeRobot decodes only what is still buffered or ahead; the result is the unskipped stream's tail."""
    from vla_parl.data.loader import shuffled_steps

    source = _source(lerobot_dirs["v3.0"])
    assert source.selective_images
    full = list(shuffled_steps(source, (0, 1), buffer, seed=5))
    assert len(full) == sum(LENGTHS)
    for skip in (1, 7, sum(LENGTHS) - 3, sum(LENGTHS), sum(LENGTHS) + 2):
        _same_steps(list(shuffled_steps(source, (0, 1), buffer, seed=5, skip=skip)), full[skip:])


def test_skipping_on_a_source_that_decodes_everything(calvin_dir):
    from vla_parl.data.loader import shuffled_steps

    source = _source(calvin_dir, kind="calvin")
    assert not source.selective_images
    full = list(shuffled_steps(source, (0, 1), 8, seed=2))
    _same_steps(list(shuffled_steps(source, (0, 1), 8, seed=2, skip=5)), full[5:])


def test_step_batches_resumed_from_a_saved_position_continue_across_epochs(lerobot_dirs):
    """Batches after `load_state(state())` in a fresh object equal the uninterrupted sequence, past an epoch end."""
    from vla_parl.data.loader import StepBatches

    def batches(**kw):
        return StepBatches(_source(lerobot_dirs["v2.1"]), batch_size=3, shuffle_buffer=5, seed=11, **kw)

    first = batches()
    want = [next(first)["action"] for _ in range(20)]   # 37 steps: 12 batches an epoch, so two epochs
    assert first.epoch == 1
    part = batches()
    got = [next(part)["action"] for _ in range(7)]
    saved = json.loads(json.dumps(part.state()))
    assert saved["epoch"] == 0 and saved["batches"] == [7]
    resumed = batches()
    assert resumed.load_state(saved)
    got += [next(resumed)["action"] for _ in range(13)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert not np.array_equal(want[0], want[12])   # the second epoch is a new order


def test_resume_with_other_settings_restarts_the_epoch_and_says_so(lerobot_dirs):
    from vla_parl.data.loader import StepBatches, resume_batches

    saved = {"epoch": 2, "batches": [4], "next_reader": 0, "readers": 1, "batch_size": 3, "shuffle_buffer": 5}
    other = StepBatches(_source(lerobot_dirs["v2.1"]), batch_size=2, shuffle_buffer=5, seed=11)
    with pytest.warns(UserWarning, match="restarts epoch 2 from its beginning"):
        assert not resume_batches(other, [saved])
    assert other.state()["epoch"] == 2 and other.state()["batches"] == [0]


TINY = ["model.name=tiny", "model.image_size=56", "run.progress=false",
        "model.unnorm_key=tiny", "data.kind=lerobot", "data.shuffle_buffer=6", "optim.batch_size=4",
        "optim.steps=11", "run.checkpoint_every=5", "run.log_every=1", "run.threads=1"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_sft_stopped_then_resumed_on_lerobot_matches_an_uninterrupted_run(lerobot_dirs, tmp_path, workers):
    """The real CLI: 11 steps straight vs 5 steps, stop, `--resume` — across an epoch end (37 steps, batches of 4:
    9 batches an epoch in one reader, 8 in two), with 2 DataLoader workers resumed with the odd one due next."""
    from tests.recipes._cli import last_values, run_cli

    args = [*TINY, f"data.path={lerobot_dirs['v3.0']}", f"data.num_workers={workers}"]
    full, part = tmp_path / "full", tmp_path / "part"
    proc, _ = run_cli("run", "sft", "--output-dir", str(full), *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, _ = run_cli("run", "sft", "--output-dir", str(part), *args, "run.stop_after=5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (part / "checkpoints" / "latest").read_text().strip() == "step_00000005"
    assert not (part / "final").exists()
    state = json.loads((part / "checkpoints" / "step_00000005" / "trainer_state.json").read_text())
    assert state["stream"][0]["batches"] == ([5] if workers == 0 else [3, 2])   # reader 1 is due next
    proc, _ = run_cli("run", "sft", "--output-dir", str(part), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    want, got = last_values(full / "metrics.jsonl", "sft/loss"), last_values(part / "metrics.jsonl", "sft/loss")
    assert sorted(want) == sorted(got) == list(range(1, 12))
    for step in want:
        assert got[step] == pytest.approx(want[step], abs=1e-6), step
    from safetensors.numpy import load_file

    a = load_file(next((full / "final" / "model").glob("*.safetensors")))
    b = load_file(next((part / "final" / "model").glob("*.safetensors")))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
