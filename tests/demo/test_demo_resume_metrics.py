"""A resumed demo keeps exactly the metric records of its saved results: what a phase logged after the last
saved result is dropped, because that phase runs again (and would log it twice)."""

from __future__ import annotations

import json

from vla_parl.config.schema import load_config
from vla_parl.recipes._configs import DemoRecipeConfig
from vla_parl.recipes.demo import DemoRecipe
from vla_parl.training.metrics import read_metrics

CONFIG = "configs/demo_ci.yaml"


def _recipe(run_dir, resume: bool) -> DemoRecipe:
    recipe = DemoRecipe(load_config(DemoRecipeConfig, CONFIG, ["run.progress=false"]), run_dir, resume=resume)
    recipe.setup()
    return recipe


def test_resume_drops_the_records_logged_after_the_last_saved_result(tmp_path):
    first = _recipe(tmp_path, resume=False)
    for step in range(3):
        first.logger.log(step, {"loss": float(step)}, seed=0, run="sft")
    first.results = {0: {"sft": {"success_rate": 0.5}}}
    first._save_state()                                  # 3 records belong to the saved results
    for step in range(3, 5):                             # the critic phase logs, then the run is killed
        first.logger.log(step, {"loss": float(step)}, seed=0, run="critic")
    first.logger.sync()
    assert json.loads((tmp_path / "demo_state.json").read_text())["metric_records"] == 3

    resumed = _recipe(tmp_path, resume=True)
    assert resumed.results == {0: {"sft": {"success_rate": 0.5}}}
    assert [(r["run"], r["step"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [("sft", 0), ("sft", 1),
                                                                                          ("sft", 2)]


def test_a_fresh_start_empties_the_old_metrics(tmp_path):
    first = _recipe(tmp_path, resume=False)
    first.logger.log(0, {"loss": 1.0}, seed=0, run="sft")
    first.logger.sync()
    _recipe(tmp_path, resume=False)
    assert read_metrics(tmp_path / "metrics.jsonl") == []
