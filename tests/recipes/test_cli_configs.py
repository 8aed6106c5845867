"""`vla-parl run/ls/cp`: config validation happens before any heavy import and names the key and the fix."""

from __future__ import annotations

import pytest

from tests.recipes._cli import run_cli


def test_ls_lists_recipes_and_configs():
    proc, _ = run_cli("ls")
    assert proc.returncode == 0, proc.stderr
    for name in ("sft", "critic", "parl", "demo", "demo_ci", "sft_bridge_7b", "parl_calvin_7b", "accelerate/fsdp"):
        assert name in proc.stdout


def test_cp_copies_a_builtin_config_and_refuses_to_overwrite(tmp_path):
    proc, _ = run_cli("cp", "demo", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "demo.yaml").read_text()
    assert text.startswith("# vla-parl run demo") and "recipe: demo" in text
    proc, _ = run_cli("cp", "demo", str(tmp_path / "demo.yaml"))
    assert proc.returncode == 2 and "--force" in proc.stderr


@pytest.mark.parametrize("args, expected", [
    (["run", "demo", "sft.step=3"], "unknown config key 'sft.step'; did you mean 'sft.steps'?"),
    (["run", "sft", "optim.batch_size=large"], "optim.batch_size: expected an integer"),
    (["run", "sft", "data.kind=rlds", "data.path=/no/such/dir"], "data.path '/no/such/dir' does not exist"),
    (["run", "sft", "data.kind=calvin"], "data.path is required for data.kind=calvin"),
    (["run", "parl", "online.env=calvin_parl"], "online.env=calvin_parl mixes CALVIN-scene episodes with CALVIN "
                                                "offline data: set data.kind=calvin"),
    (["run", "parl", "data.kind=calvin", "data.path=."],
     "whose episodes do not mix with data.kind=calvin: set online.env=calvin_parl"),
    (["run", "parl", "data.kind=calvin", "data.path=.", "online.env=calvin_parl"],
     "set data.reward=parl"),
    (["run", "parl", "online.calvin.image_sise=32"], "did you mean 'online.calvin.image_size'?"),
    (["run", "demo", "--config", "dmeo"], "did you mean 'demo'?"),
    (["run", "sft", "--config", "demo"], "is a config for recipe 'demo', not 'sft'"),
    (["run", "sfft"], "did you mean 'sft'?"),
])
def test_bad_configs_fail_fast_with_a_message_naming_the_key(args, expected):
    proc, elapsed = run_cli(*args)
    assert proc.returncode == 2
    assert expected in proc.stderr, proc.stderr
    assert elapsed < 3.0   # the whole subprocess, interpreter start included (validation itself is < 1 s)


def test_config_validation_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, time; t = time.perf_counter();"
            "from vla_parl.cli.run import load_recipe_config;"
            "from vla_parl.errors import ConfigError\n"
            "try: load_recipe_config('demo', None, ['sft.lr=fast'])\n"
            "except ConfigError as e: print(e)\n"
            "print('torch' in sys.modules, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert "sft.lr: expected a number" in out[0]
    torch_loaded, seconds = out[1].split()
    assert torch_loaded == "False" and float(seconds) < 1.0


def test_every_builtin_config_validates_and_opens_with_its_command():
    from vla_parl.cli.run import list_configs, load_recipe_config

    for name, resource in list_configs().items():
        text = resource.read_text()
        assert text.startswith("# "), f"{name} must open with the command that runs it"
        if name.startswith("accelerate/"):
            continue
        recipe = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("recipe:"))
        assert f"vla-parl run {recipe}" in text.splitlines()[0] or "accelerate launch" in text.splitlines()[0]
        if "data.path" in text.splitlines()[0] or "kind: rlds" in text or "kind: calvin" in text:
            continue   # needs a dataset on disk; its schema is checked with a path below
        load_recipe_config(recipe, name, [])


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_dataset_configs_validate_with_a_dataset_path(tmp_path):
    from vla_parl.cli.run import list_configs, load_recipe_config

    for name, resource in list_configs().items():
        text = resource.read_text()
        if "kind: rlds" in text or "kind: calvin" in text:
            recipe = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("recipe:"))
            from vla_parl.errors import ConfigError

            if "load_in_4bit: true" in text and not _has_cuda():     # QLoRA: refused where it cannot run
                with pytest.raises(ConfigError, match="load_in_4bit=true .* needs a CUDA GPU"):
                    load_recipe_config(recipe, name, [f"data.path={tmp_path}"])
                continue
            cfg = load_recipe_config(recipe, name, [f"data.path={tmp_path}"])
            assert cfg.data.kind in ("rlds", "calvin")
            assert cfg.model.name == "openvla_7b" or name.endswith("_diffusion")   # the DDPM configs read no VLA


def test_help_everywhere():
    for args in (["--help"], ["run", "--help"], ["run", "demo", "--help"], ["ls", "--help"], ["cp", "--help"]):
        proc, _ = run_cli(*args)
        assert proc.returncode == 0 and "usage" in proc.stdout


def test_wandb_without_the_package_fails_at_validation_with_the_install_hint():
    import subprocess
    import sys
    import time

    # sys.modules["wandb"] = None makes the package look absent (find_spec returns None), installed or not
    code = ("import sys; sys.modules['wandb'] = None; from vla_parl.cli.main import main; "
            "sys.exit(main(['run', 'demo', 'run.wandb=true']))")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2 and "pip install 'vla-parl[wandb]'" in proc.stderr and elapsed < 3.0
