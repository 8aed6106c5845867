"""Every command in README.md and docs/*.md, so the documents and the behaviour cannot drift apart.

* `test_every_documented_command_is_classified`: each command a user can copy is listed below as RUN
  (executed by `test_documented_commands_run`), CHECK (parsed by the real `vla-parl` argument parser and,
  for `run`, its config validated; not executed: it needs a GPU, a dataset, a server, or minutes) or SKIP
  (not a vla-parl command: environment set-up, synopses). A new or edited command fails this test until it
  is classified here — the failure names the file and line. (Entries no longer documented are harmless.)
* `test_documented_commands_run`: the RUN commands of each document, in document order, in a fresh
  directory (the document's own `runs/`), through the real CLI entry point. The only changes to the
  written text are the speed overrides appended for CPU-seconds runs (`_FAST`) and the placeholders
  (`DIR`, `/data/rlds`, `/data/oxe`) pointed at tiny real inputs built here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.docs._extract import argv, documented_commands

RUN, CHECK, SKIP = "run", "check", "skip"

# exact documented text → (class, why it is not run / what the run must produce)
COMMANDS: dict[str, tuple[str, str]] = {
    # ---- README.md ----
    "bash scripts/demo.sh": (SKIP, "the set-up + 13-min demo itself; CI runs scripts/test.sh, the demo pipeline is "
                                   "tests/demo/test_demo_ci.py"),
    "bash scripts/test.sh": (SKIP, "the test suite itself"),
    "source .venv/bin/activate": (SKIP, "shell set-up"),
    "vla-parl --help": (RUN, ""),
    "vla-parl run demo": (CHECK, "tens of minutes on 2 cores; the pipeline runs with demo_ci in "
                                 "tests/demo/test_demo_ci.py"),
    "vla-parl quickstart": (RUN, ""),
    "vla-parl ls": (RUN, ""),
    "vla-parl cp sft_tabletop my_sft.yaml": (RUN, "my_sft.yaml"),
    "vla-parl validate my_sft.yaml optim.lr=2e-5": (RUN, ""),
    "vla-parl run sft --config my_sft.yaml --output-dir runs/my_sft optim.lr=2e-5": (RUN, "runs/my_sft/final/model"),
    "vla-parl run sft --output-dir runs/my_sft --resume": (RUN, "runs/my_sft/final/model"),
    "accelerate launch --config_file configs/accelerate/fsdp.yaml -m vla_parl.recipes.parl --config parl_calvin_7b ...":
        (CHECK, "OpenVLA-7B on CALVIN, 8 GPUs; multi-process recipes run in tests/recipes/test_recipes_fsdp.py"),
    "vla-parl run sft    --output-dir runs/sft": (RUN, "runs/sft/final/model"),
    "vla-parl run critic --output-dir runs/critic policy=runs/sft/final/model": (RUN, "runs/critic/final/critic"),
    "vla-parl run parl   --output-dir runs/parl policy=runs/sft/final/model critic.checkpoint=runs/critic/final/critic":
        (RUN, "runs/parl/final/model"),
    "vla-parl eval tabletop --checkpoint runs/parl/final/model --output-dir runs/eval_parl":
        (RUN, "runs/eval_parl/tabletop_results.json"),
    "vla-parl quickstart --checkpoint DIR --image frame.png --unnorm-key bridge_orig": (RUN, ""),
    "vla-parl data inspect --data-dir /data/rlds --dataset bridge_orig": (RUN, ""),
    "vla-parl data stats   --data-dir /data/rlds --dataset bridge_orig --out dataset_statistics.json":
        (RUN, "dataset_statistics.json"),
    "vla-parl eval tabletop --checkpoint runs/demo/final/model --task reach --max-episode-steps 20 --targets red "
    "--output-dir runs/eval": (RUN, "runs/eval/tabletop_results.json"),
    "vla-parl eval tabletop --checkpoint runs/demo/final/model --critic runs/demo/final/critic --output-dir "
    "runs/eval_demo": (RUN, "runs/eval_demo/tabletop_results.json"),
    "vla-parl eval calvin --checkpoint DIR --unnorm-key calvin --workers 8 --output-dir runs/calvin":
        (CHECK, "1000 chains × 5 subtasks on 8 workers; the CLI runs in tests/eval/test_calvin_cli.py"),
    'vla-parl eval bridge --checkpoint DIR --data-dir /data/rlds --split "train[95%:]" --output-dir runs/bridge':
        (RUN, "runs/bridge/bridge_results.json"),
    "vla-parl serve --checkpoint runs/demo/final/model [--critic runs/demo/final/critic] [--api-key-file key.txt]":
        (SKIP, "a synopsis ([optional] flags); the server runs in tests/serving/test_cli_serve.py"),
    "accelerate launch --config_file configs/accelerate/fsdp.yaml": (SKIP, "a fragment in the prose"),
    "vla-parl bench memory": (CHECK, "~25 s; runs in tests/bench/"),
    "vla-parl bench inference [--model tiny|7b|DIR] [--device cuda] [--batch-sizes 1 16] [--json out.json]":
        (SKIP, "a synopsis; runs in tests/cli/test_cli.py"),
    "vla-parl bench sample    [--model tiny|7b|DIR] [--num-samples 1 8 32 64] [--json out.json]":
        (SKIP, "a synopsis; runs in tests/cli/test_cli.py"),
    "vla-parl bench rollout | memory | train_step": (SKIP, "a synopsis; runs in tests/bench/"),
    "vla-parl bench parl_step [--model 7b --device cuda --batch-size 16]": (SKIP, "a synopsis; runs in tests/bench/"),
    "vla-parl bench all --quick --json out.json": (CHECK, "minutes; runs in tests/bench/"),
    "python scripts/bench_data.py    --json out.json": (SKIP, "a benchmark script (minutes)"),
    "python scripts/bench_serving.py --json out.json": (SKIP, "a benchmark script (minutes)"),
    "python scripts/fault_injection.py [--only requests connections]": (SKIP, "a synopsis; a fault-injection script"),
    "python scripts/fault_injection.py [--only requests connections]":
        (SKIP, "the fault-injection pass (minutes); its serving sections run in tests/bench/test_faults.py"),
    "vla-parl bench": (SKIP, "prose mention"),
    "vla-parl push runs/parl/final/model --repo-id my-org/openvla-parl [--private] [--dry-run]":
        (SKIP, "a synopsis; needs the Hub; tests/cli/test_push.py"),
    "scripts/gpu_check.sh [--cpu-dry-run]": (SKIP, "a synopsis; the GPU check script"),
    # ---- docs/performance.md ----
    "scripts/gpu_check.sh --cpu-dry-run": (SKIP, "the GPU check script; tests/bench/test_gpu_check.py"),
    "scripts/gpu_wheels.sh": (SKIP, "installs GPU wheels"),
    # ---- docs/calvin.md (owned by the CALVIN docs) ----
    "git clone https://github.com/mees/calvin_env && git -C calvin_env checkout 1431a46": (SKIP, "external download"),
    "pip install -e calvin_env": (SKIP, "external install"),
    "vla-parl eval calvin --env-version …": (SKIP, "prose mention"),
    "vla-parl eval calvin": (SKIP, "prose mention"),
    "git clone https://github.com/mees/calvin_env ~/calvin_env": (SKIP, "external download"),
    "export CALVIN_ENV_DATA=~/calvin_env": (SKIP, "shell set-up"),
    "git clone --recursive https://github.com/mees/calvin_env && pip install -e calvin_env": (SKIP, "external install"),
    "OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_calvin_*.py tests/envs/test_calvin_*.py":
        (SKIP, "tests (CI runs them)"),
    # ---- docs/recipes.md ----
    "vla-parl run parl --config parl_robot --output-dir runs/parl_robot policy=runs/sft/final/model "
    "critic.checkpoint=runs/critic_robot/final/critic":
        (CHECK, "waits for episodes robots finish through a policy server; runs in tests/recipes/test_parl_robot.py"),
    "vla-parl run / ls / cp / validate": (SKIP, "a heading"),
    "vla-parl cp demo my_demo.yaml": (RUN, "my_demo.yaml"),
    "vla-parl validate my_demo.yaml seeds=[0,1]": (RUN, ""),
    "vla-parl run RECIPE [--config FILE_OR_BUILTIN] [--output-dir DIR] [--resume | --force] [key=value ...]":
        (SKIP, "a synopsis"),
    "vla-parl run demo seeds=[0,1,2]": (CHECK, "3 × one seed"),
    "vla-parl run demo online.env=robot": (CHECK, "tens of minutes on 2 cores; the pipeline runs with demo_ci "
                                                  "in tests/demo/test_demo_robot.py"),
    "vla-parl run sft --config sft_tabletop --output-dir runs/sft optim.steps=200": (RUN, "runs/sft/final/model"),
    "vla-parl run sft --output-dir runs/sft --resume": (RUN, "runs/sft/final/model"),
    "vla-parl run critic --output-dir runs/critic policy=runs/sft/final/model": (RUN, "runs/critic/final/critic"),
    "vla-parl run parl --output-dir runs/parl policy=runs/sft/final/model critic.checkpoint=runs/critic/final/critic":
        (RUN, "runs/parl/final/model"),
    "vla-parl run parl --output-dir runs/parl_smoke --force policy=random critic.checkpoint=fresh":
        (RUN, "runs/parl_smoke/final/model"),
    "vla-parl run sft --output-dir runs/sft_diffusion policy.type=diffusion optim.steps=300":
        (RUN, "runs/sft_diffusion/final/model"),
    "vla-parl run critic --output-dir runs/critic_diffusion policy=runs/sft_diffusion/final/model":
        (RUN, "runs/critic_diffusion/final/critic"),
    "vla-parl run parl --output-dir runs/parl_diffusion policy=runs/sft_diffusion/final/model "
    "critic.checkpoint=runs/critic_diffusion/final/critic": (RUN, "runs/parl_diffusion/final/model"),
    "accelerate launch --config_file configs/accelerate/ddp.yaml -m vla_parl.recipes.sft --config sft_bridge_7b "
    "data.path=/data/oxe": (CHECK, "OpenVLA-7B, GPUs"),
    "accelerate launch --config_file configs/accelerate/fsdp.yaml -m vla_parl.recipes.sft --config sft_bridge_7b "
    "data.path=/data/oxe": (CHECK, "OpenVLA-7B, GPUs"),
    "accelerate launch --config_file configs/accelerate/fsdp.yaml -m vla_parl.recipes.sft --output-dir runs/sft "
    "--resume": (CHECK, "multi-process; tests/recipes/test_recipes_fsdp.py resumes under FSDP2"),
    "accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2 -m vla_parl.recipes.parl":
        (CHECK, "2 processes; tests/recipes/test_recipes_fsdp.py"),
    "vla-parl run": (SKIP, "prose mention"),
    "vla-parl run demo seeds=[s] --output-dir runs/demo_s<s>": (SKIP, "a pattern (s = 0, 1, 2)"),
    "python -m vla_parl.demo.merge runs/demo_s0 runs/demo_s1 runs/demo_s2 --output-dir runs/demo_3seeds":
        (SKIP, "needs three demo runs; merge_runs runs in tests/demo/test_report.py"),
    # ---- docs/scaling.md ----
    "accelerate launch --config_file configs/accelerate/fsdp.yaml -m vla_parl.recipes.sft --output-dir "
    "runs/sft_bridge --resume": (CHECK, "multi-process, GPUs"),
    "torchrun --nproc_per_node 8 -m vla_parl.recipes.parl --config parl_calvin_7b run.distributed=fsdp ...":
        (CHECK, "8 GPUs"),
    "accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2 -m vla_parl.recipes.sft "
    "--output-dir runs/sft_fsdp optim.steps=3 optim.batch_size=2 lora.enabled=true":
        (CHECK, "2 processes; the same launch runs in tests/recipes/test_recipes_fsdp.py"),
    "accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2": (SKIP, "a fragment in the prose"),
    "vla-parl bench rollout": (CHECK, "~1 min; runs in tests/bench/"),
    "vla-parl bench parl_step": (SKIP, "prose mention"),
    "vla-parl bench parl_step --model 7b --device cuda --batch-size 16": (CHECK, "OpenVLA-7B on a GPU"),
    "vla-parl bench parl_step --threads 1": (CHECK, "~1 min; runs in tests/bench/"),
    "vla-parl bench parl_step --threads 1 --full-finetune --image-size 56 --batch-size 32 --num-samples 16":
        (CHECK, "~1 min; the --full-finetune path runs in tests/bench/"),
    "vla-parl bench parl_step --threads 1 --full-finetune --batch-size 32 --num-samples 16":
        (CHECK, "~1 min; the --full-finetune path runs in tests/bench/"),
    "vla-parl bench parl_step --threads 1 --full-finetune --batch-size 32 --num-samples 16 --image-size 84 "
    "--vision siglip": (CHECK, "~1 min; the --vision siglip path runs in tests/bench/"),
    "vla-parl bench all": (SKIP, "prose mention"),
    "vla-parl bench all [--quick] [--only NAME ...] [--json out.json]": (SKIP, "a synopsis"),
    # ---- docs/serving.md ----
    "vla-parl serve": (SKIP, "prose mention"),
    "vla-parl eval": (SKIP, "prose mention"),
    "vla-parl serve --critic runs/demo/final/critic": (SKIP, "prose mention (a flag of the documented serve command)"),
    "pip install 'vla-parl[serve]'": (SKIP, "installed by the set-up already"),
    "vla-parl serve --checkpoint runs/parl/final/model --critic runs/parl/final/critic":
        (CHECK, "a long-running server; tests/serving/test_cli_serve.py runs it"),
    "python -m vla_parl.cli.serve ...": (SKIP, "a synopsis"),
    "vla-parl serve --checkpoint runs/parl/final/model --episodes runs/robot/episodes --policy-updates "
    "runs/robot/publish": (CHECK, "a long-running server; tests/serving/test_episode_sigkill.py runs serve --episodes"),
    "curl -s -X POST localhost:8000/v1/episodes -H 'Content-Type: application/json' -d '{\"instruction\": "
    "\"put the carrot in the pot\", \"unnorm_key\": \"bridge_orig\"}'":
        (SKIP, "needs a running server; tests/serving/test_episodes.py makes the same calls"),
    "curl -s -X POST localhost:8000/v1/episodes/EPISODE_ID/end -H 'Content-Type: application/json' -d "
    "'{\"success\": true}'": (SKIP, "needs a running server and an episode id; tests/serving/test_episodes.py"),
    "curl -s localhost:8000/v1/episodes": (SKIP, "needs a running server; tests/serving/test_episodes.py"),
    "python -m serving.example_robot_loop --url http://127.0.0.1:8000 --episodes 2":
        (CHECK, "needs a running server; tests/serving/test_example_robot_loop.py runs it against one"),
    "pip install --no-build-isolation ./client":
        (SKIP, "installation on a robot computer; tests/serving/test_client_torch_free.py builds and installs it"),
    "vla-parl robot sim --url http://127.0.0.1:8000 --task reach --episodes 20 --processes 2":
        (CHECK, "needs a running server; tests/cli/test_robot_sim.py runs robot sim against one"),
    # ---- docs/robot.md (and its README paragraph) ----
    "vla-parl run parl --config parl_robot": (CHECK, "waits for robot episodes; tests/serving/test_robot_loop.py"),
    "vla-parl robot report": (SKIP, "prose mention"),
    "vla-parl bench robot_loop": (CHECK, "minutes; the loop it measures runs in tests/serving/test_robot_loop.py"),
    "vla-parl bench robot_loop --json out.json": (CHECK, "3 minutes; tests/bench/test_robot_loop_bench.py runs it"),
    "vla-parl bench robot_loop [--quick] [--robots 2] [--json out.json]":
        (SKIP, "a synopsis; minutes (server + learner + robots); tests/serving/test_robot_loop.py runs the loop"),
    "vla-parl cp parl_robot my_robot.yaml": (CHECK, "the same `cp` runs for sft_tabletop in README.md"),
    "vla-parl run sft --config sft_tabletop --output-dir runs/sft": (CHECK, "the README walk-through runs SFT"),
    "vla-parl run critic --config critic_tabletop --output-dir runs/critic_robot policy=runs/sft/final/model "
    "critic.privileged_state=false": (CHECK, "the README walk-through runs the critic recipe"),
    "vla-parl serve --checkpoint runs/sft/final/model --critic runs/critic_robot/final/critic --episodes "
    "runs/robot/episodes --policy-updates runs/parl_robot/published":
        (CHECK, "a long-running server; tests/serving/test_robot_loop.py runs the same with a learner and robots"),
    "vla-parl run parl --config parl_robot --output-dir runs/parl_robot policy=runs/sft/final/model "
    "critic.checkpoint=runs/critic_robot/final/critic":
        (CHECK, "waits for robot episodes; tests/serving/test_robot_loop.py runs it against a server and robots"),
    "vla-parl robot sim --url http://127.0.0.1:8000 --task reach --episodes 80 --processes 2":
        (CHECK, "needs a running server; tests/serving/test_robot_loop.py runs robot sim against one"),
    "vla-parl robot report --episodes runs/robot/episodes --out runs/robot/success.png":
        (CHECK, "needs stored episodes; tests/cli/test_robot_report.py runs it"),
    "vla-parl robot report --episodes runs/robot/episodes --out success.png":
        (CHECK, "needs stored episodes; tests/cli/test_robot_report.py runs it"),
    "vla-parl run sft --config sft_bridge_7b --output-dir runs/sft_robot data.kind=lerobot "
    "data.path=/data/my_robot_demos data.dataset_name=my_robot model.unnorm_key=my_robot":
        (CHECK, "OpenVLA-7B on a lab's LeRobot dataset, GPUs"),
    "vla-parl run critic --config critic_bridge_7b --output-dir runs/critic_robot policy=runs/sft_robot/final/model "
    "data.kind=lerobot data.path=/data/my_robot_demos data.dataset_name=my_robot model.unnorm_key=my_robot":
        (CHECK, "OpenVLA-7B on a lab's LeRobot dataset, GPUs"),
    "vla-parl serve --checkpoint runs/sft_robot/final/model --critic runs/critic_robot/final/critic --episodes "
    "runs/robot/episodes --policy-updates runs/parl_robot/published --host 0.0.0.0 --api-key-file key.txt "
    "--device cuda:0": (CHECK, "the 7B on a GPU, a long-running server"),
    "vla-parl run parl --config parl_bridge_7b --output-dir runs/parl_robot policy=runs/sft_robot/final/model "
    "critic.checkpoint=runs/critic_robot/final/critic data.kind=lerobot data.path=/data/my_robot_demos "
    "data.dataset_name=my_robot model.unnorm_key=my_robot online.env=robot online.rounds=20 "
    "online.robot.replay_dir=runs/robot/episodes": (CHECK, "OpenVLA-7B learner waiting for a lab's robots, GPUs"),
    "vla-parl run parl --output-dir runs/parl_robot --resume":
        (CHECK, "tests/serving/test_robot_loop.py resumes a learner SIGKILLed mid-round"),
}

# speed overrides appended to the RUN commands (CPU seconds instead of minutes); nothing else changes
_TINY_DATA = ["data.num_episodes=2", "data.max_episode_steps=5", "run.progress=false", "run.threads=1"]
_FAST = {
    "sft": [*_TINY_DATA, "optim.steps=2", "optim.batch_size=2", "run.checkpoint_every=1"],
    "critic": [*_TINY_DATA, "optim.steps=2", "optim.batch_size=4", "candidate_cache_states=6",
               "critic.hidden_dims=[16]", "critic.instruction_dim=4", "objective.num_samples=2",
               "objective.cql_n_actions=2", "action_optimizer.top_k=2", "action_optimizer.num_steps=1"],
    "parl": [*_TINY_DATA, "critic.hidden_dims=[16]", "critic.instruction_dim=4", "parl.num_samples=2",
             "parl.cache_states=6", "parl.offline_refreshes=1", "parl.distill_steps_per_refresh=1",
             "parl.critic_steps_per_refresh=1", "online.rounds=1", "online.episodes_per_round=1",
             "online.distill_steps_per_round=1", "online.critic_steps_per_round=1", "objective.num_samples=2",
             "objective.cql_n_actions=2", "action_optimizer.top_k=2", "action_optimizer.num_steps=1",
             "policy_optim.batch_size=2", "critic_optim.batch_size=4"],
}
_FAST_EVAL = {"tabletop": ["--episodes", "2", "--max-episode-steps", "5"], "bridge": ["--max-steps", "4"]}


def _fast(args: list[str]) -> list[str]:
    """`args` (after `vla-parl`) with the speed overrides of its recipe / evaluation appended."""
    if args[:1] == ["run"] and len(args) > 1:
        resuming = "--resume" in args       # a resumed run keeps its saved (already fast) config
        return args + ([] if resuming else _FAST.get(args[1], []))
    if args[:1] == ["eval"] and len(args) > 1:
        extra = list(_FAST_EVAL.get(args[1], []))
        if "--max-episode-steps" in args:
            extra = extra[:2]
        return args + extra
    return args


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny real inputs behind the placeholders: an OpenVLA checkpoint with `bridge_orig` statistics
    (`DIR`) and an RLDS bridge_orig dataset of 20 episodes (`/data/rlds`, `/data/oxe`)."""
    from vla_parl.data.synthetic import write_tiny_rlds
    from vla_parl.models import openvla_tiny
    from vla_parl.models.openvla.presets import default_norm_stats

    root = tmp_path_factory.mktemp("doc_inputs")
    openvla_tiny(image_size=56, norm_stats=default_norm_stats("bridge_orig"), seed=3).save_pretrained(root / "ckpt")
    write_tiny_rlds(root / "rlds", "bridge_orig", episode_lengths=(3,) * 20, image_size=32)
    return {"DIR": str(root / "ckpt"), "/data/rlds": str(root / "rlds"), "/data/oxe": str(root / "rlds")}


def _substitute(args: list[str], inputs: dict[str, str]) -> list[str]:
    out = []
    for arg in args:
        for placeholder, value in inputs.items():
            if arg == placeholder:
                arg = value
            elif arg.endswith("=" + placeholder):
                arg = arg[: -len(placeholder)] + value
        out.append(arg)
    return out


def _cli_args(command: str) -> list[str] | None:
    """The `vla-parl` arguments a documented command amounts to (launchers run `-m vla_parl.recipes.X`, which
    is `vla-parl run X`); None for other programs."""
    args = [a for a in argv(command) if a != "..."]
    if args[0] == "vla-parl":
        return args[1:]
    if "-m" in args and args[0] in ("accelerate", "torchrun", "python"):
        module, rest = args[args.index("-m") + 1], args[args.index("-m") + 2:]
        if module.startswith("vla_parl.recipes."):
            return ["run", module.rsplit(".", 1)[1], *rest]
        if module == "vla_parl.cli.serve":
            return ["serve", *rest]
    return None


def test_every_documented_command_is_classified():
    documented = documented_commands()
    assert len(documented) > 40
    unknown = [f"{d.where}: {d.command}" for d in documented if d.command not in COMMANDS]
    assert not unknown, ("documented commands missing from tests/docs/test_documented_commands.py (classify each "
                         "as RUN, CHECK or SKIP):\n  " + "\n  ".join(unknown))


def test_checked_commands_parse_and_validate(monkeypatch, tmp_path):
    """CHECK and RUN commands parse with the real parser; `run` commands' configs validate (torch-free).
    Parsing needs only that the placeholders' directories exist."""
    from vla_parl.cli.main import build_parser
    from vla_parl.cli.run import _split_overrides, load_recipe_config

    placeholders = ("DIR", "/data/rlds", "/data/oxe", "/data/my_robot_demos")
    inputs = {name: str(tmp_path / f"placeholder_{i}") for i, name in enumerate(placeholders)}
    for path in inputs.values():
        Path(path).mkdir()
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    checked = 0
    for documented in documented_commands():
        kind, _ = COMMANDS.get(documented.command, (SKIP, "unclassified"))   # unclassified: reported by the test above
        args = _cli_args(documented.command)
        if kind == SKIP or args is None:
            continue
        args = _substitute(args, inputs)
        try:
            ns = parser.parse_args(args)
        except SystemExit as exc:
            if exc.code != 0 or args != ["--help"]:
                raise AssertionError(f"{documented.where}: `{documented.command}` does not parse") from exc
            continue
        if ns.command == "run":
            _split_overrides(ns)
            partial = "..." in documented.command                  # "more overrides here"
            written_here = ns.config == "my_sft.yaml"               # made by the `cp` before it
            if not (ns.resume or partial or written_here):
                load_recipe_config(ns.recipe, ns.config, ns.overrides)
        checked += 1
    assert checked > 25


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from vla_parl.cli.main import main

    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
@pytest.mark.parametrize("document", ["README.md", "docs/recipes.md"])
def test_documented_commands_run(document, inputs, tmp_path, monkeypatch, capsys):
    """The RUN commands of `document`, in order, in a fresh directory; each exits 0 and writes what it says."""
    from PIL import Image

    from vla_parl.cli.quickstart import sample_scene_image

    monkeypatch.chdir(tmp_path)
    Image.fromarray(sample_scene_image(64)).save(tmp_path / "frame.png")     # the README's `frame.png`
    ran = []
    for documented in documented_commands([Path(__file__).resolve().parents[2] / document]):
        kind, expect = COMMANDS.get(documented.command, (SKIP, "unclassified"))
        if kind != RUN or documented.command in ran:
            continue
        args = _fast(_substitute(_cli_args(documented.command), inputs))
        if "runs/demo/final/model" in args and not Path("runs/demo/final/model").exists():
            # the demo's servable model, without the 13-min demo: the walk-through's PA-RL model stands in
            shutil.copytree("runs/parl/final/model", "runs/demo/final/model")
        if "runs/demo/final/critic" in args and not Path("runs/demo/final/critic").exists():
            shutil.copytree("runs/parl/final/critic", "runs/demo/final/critic")     # and its critic
        try:
            code, out, err = _run_cli(args, capsys)
        except SystemExit as exc:      # argparse --help
            code, out, err = int(exc.code or 0), *capsys.readouterr()
        assert code == 0, f"{documented.where}: `{documented.command}` exited {code}:\n{err[-3000:]}"
        if expect:
            assert Path(expect).exists(), f"{documented.where}: `{documented.command}` did not write {expect}"
        if args[0] == "run":      # the end-of-run summary names the saved model / critic directory
            assert expect in out, f"{documented.where}: the summary does not name {expect}:\n{out[-2000:]}"
        ran.append(documented.command)
    assert ran
    print(f"{document}: ran {len(ran)} commands:", *ran, sep="\n  ")
