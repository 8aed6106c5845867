"""`vla-parl eval calvin|bridge|tabletop`: evaluate a checkpoint (CALVIN protocol, RLDS offline metrics, simulator)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a policy: calvin (long-horizon), bridge (offline), tabletop",
                                   description="Evaluate a policy checkpoint.")
    kinds = parser.add_subparsers(dest="eval_kind", metavar="KIND")
    bridge = kinds.add_parser("bridge", help="action-token accuracy, L1/MSE per dim, gripper accuracy on RLDS data",
                              description="Offline metrics of greedy (and critic-refined) actions on an RLDS split.")
    bridge.add_argument("--checkpoint", required=True, help="OpenVLA checkpoint dir or hub id")
    bridge.add_argument("--data-dir", required=True, help="TFDS data dir holding <dataset>/<version>/")
    bridge.add_argument("--dataset", default="bridge_orig")
    bridge.add_argument("--split", default="train",
                        help="TFDS split, optionally sliced: 'val', 'train[95%%:]', 'train[:100]'")
    bridge.add_argument("--unnorm-key", default=None, help="statistics to normalise with (default: --dataset)")
    bridge.add_argument("--critic", default=None, help="critic dir (QCritic.save) for PA-RL-refined actions")
    _add_operator_flags(bridge)
    bridge.add_argument("--batch-size", type=int, default=16)
    bridge.add_argument("--max-steps", type=int, default=None)
    bridge.add_argument("--device", default="cpu")
    bridge.add_argument("--output-dir", required=True)
    bridge.set_defaults(handler=_bridge)

    calvin = kinds.add_parser("calvin", help="CALVIN long-horizon protocol (5-task chains) on our scene or calvin_env",
                              description="Run the CALVIN evaluation: chains of 5 instructions, success@1..5, "
                                          "average length; resumable (chains.jsonl) and parallel (--workers).")
    calvin.add_argument("--checkpoint", required=True, help="OpenVLA checkpoint dir or hub id")
    calvin.add_argument("--unnorm-key", default=None)
    calvin.add_argument("--critic", default=None, help="critic dir for PA-RL-refined actions")
    _add_operator_flags(calvin)
    calvin.add_argument("--simulator", choices=["ours", "official"], default="ours",
                        help="'ours': vla_parl's CALVIN scene (pybullet); 'official': a calvin_env install")
    calvin.add_argument("--data-path", default=None, help="CALVIN assets (ours) or dataset dir (official)")
    calvin.add_argument("--env-version", default=None,
                        help="calvin.env_version: which calvin_env behaviour our scene reproduces, 1431a46 (the "
                             "commit mees/calvin pins, used by published baselines; default) or 797142c (HEAD); "
                             "with --simulator official the checkout's commit decides")
    calvin.add_argument("--num-sequences", type=int, default=1000)
    calvin.add_argument("--chains", default=None, help="evaluate a slice of the sequences, e.g. 0:50")
    calvin.add_argument("--ep-len", type=int, default=360, help="steps per subtask (360 in the benchmark)")
    calvin.add_argument("--workers", type=int, default=1)
    calvin.add_argument("--device", default="cpu")
    calvin.add_argument("--output-dir", required=True)
    calvin.set_defaults(handler=_calvin)

    tabletop = kinds.add_parser(
        "tabletop", help="success rate on the built-in simulator (seeded episodes, 95%% CI)",
        description="Success rate of a checkpoint on the built-in pybullet tabletop over a fixed set of seeded "
                    "episodes: the policy alone (greedy) and, with --critic, policy + PA-RL operator too. The "
                    "task, targets, image size, episode length and evaluation episodes default to those of the run "
                    "that wrote the checkpoint (<run>/config.yaml beside <run>/final/model), the operator's settings "
                    "to those saved with the critic; flags override.")
    tabletop.add_argument("--checkpoint", required=True,
                          help="policy dir: an OpenVLA (e.g. runs/demo/final/model; alone: greedy) or a diffusion/"
                               "Gaussian policy of a policy.type=... run (alone: one sample per step)")
    tabletop.add_argument("--task", default=None, choices=["reach", "push", "lift"], help="default: the run's, else reach")
    tabletop.add_argument("--episodes", type=int, default=None, help="default: the run's eval.episodes, else 40")
    tabletop.add_argument("--seed", type=int, default=None,
                          help="episode i resets with seed + i (default: the run's eval.seed, else 10000)")
    tabletop.add_argument("--unnorm-key", default=None)
    tabletop.add_argument("--critic", default=None, help="critic dir: also act with the PA-RL operator over the "
                                                         "policy's samples (N → top-k → local steps → max-Q)")
    _add_operator_flags(tabletop, legacy="16, 4, 10 and 0.05")
    tabletop.add_argument("--image-size", type=int, default=None,
                          help="rendered frame size the policy sees (default: the run's, else 56)")
    tabletop.add_argument("--max-episode-steps", type=int, default=None, help="default: the run's, else 25")
    tabletop.add_argument("--targets", nargs="+", default=None, metavar="COLOUR",
                          help="target block colours to draw from (default: the run's data.targets, else all)")
    tabletop.add_argument("--gif", type=int, default=0, help="record the first N episodes as rollout GIFs")
    tabletop.add_argument("--output-dir", required=True)
    tabletop.set_defaults(handler=_tabletop)


def _check_inputs(args: argparse.Namespace) -> None:
    """Before any heavy import: a mistyped local --checkpoint / --critic is a missing directory, not a hub id."""
    from vla_parl.cli._paths import check_model_source

    check_model_source(args.checkpoint, "--checkpoint")
    check_model_source(getattr(args, "critic", None), "--critic")


def _add_operator_flags(parser: argparse.ArgumentParser, legacy: str = "32, 10, 10 and 3e-4") -> None:
    """--num-samples/--top-k/--local-steps/--step-size: override the improvement operator saved with --critic."""
    group = parser.add_argument_group(
        "PA-RL improvement operator (with --critic)",
        "Unset flags take the settings saved with the critic; a critic saved without them uses "
        f"{legacy} (N, k, T, step size). Refined actions are the max-Q candidate.")
    group.add_argument("--num-samples", type=int, default=None, help="N policy samples per state")
    group.add_argument("--top-k", type=int, default=None, help="k candidates kept for gradient ascent")
    group.add_argument("--local-steps", type=int, default=None, help="T gradient-ascent steps on Q")
    group.add_argument("--step-size", type=float, default=None, help="gradient-ascent step size")


def _operator_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"num_samples": args.num_samples, "top_k": args.top_k, "num_steps": args.local_steps,
            "step_size": args.step_size}


def _bridge(args: argparse.Namespace) -> int:
    from vla_parl.data.splits import parse_split

    _check_inputs(args)
    parse_split(args.split)
    import torch

    from vla_parl.data import iter_steps
    from vla_parl.eval.bridge import evaluate_actions, write_results
    from vla_parl.models import OpenVLA
    from vla_parl.parl import ImprovementConfig

    model = OpenVLA.from_pretrained(args.checkpoint, device=args.device)
    unnorm_key = args.unnorm_key or (args.dataset if args.dataset in model.norm_stats else None)
    critic = improvement = None
    if args.critic:
        from vla_parl.critic import QCritic

        tokenizer = model.processor.tokenizer
        critic = QCritic.load(args.critic, tokenize=tokenizer.encode_batch, map_location=args.device)
        improvement = ImprovementConfig.from_saved(critic.improvement).with_overrides(**_operator_overrides(args))
    steps = iter_steps(args.data_dir, args.dataset, split=args.split)
    with torch.inference_mode(critic is None):
        result = evaluate_actions(model, steps, unnorm_key, batch_size=args.batch_size, max_steps=args.max_steps,
                                  critic=critic, improvement=improvement)
    json_path, plot_path = write_results(result, args.output_dir)
    greedy = result["greedy"]
    print(f"{greedy['num_steps']} steps — token accuracy {greedy['token_accuracy']['mean']:.3f}, "
          f"L1 (normalised) {greedy['l1_normalized']['mean']:.4f}, gripper accuracy {greedy['gripper_accuracy']:.3f}")
    if "refined" in result:
        refined = result["refined"]
        print(f"refined — token accuracy {refined['token_accuracy']['mean']:.3f}, "
              f"L1 (normalised) {refined['l1_normalized']['mean']:.4f}")
    print(f"wrote {json_path} and {plot_path}")
    return 0


def _calvin(args: argparse.Namespace) -> int:
    import functools

    _check_inputs(args)
    from vla_parl.envs.calvin.protocol import evaluate_calvin
    from vla_parl.eval.calvin_vla import OpenVLACalvinPolicy
    from vla_parl.errors import ConfigError

    if args.simulator == "ours":
        from vla_parl.envs.calvin.scene import DEFAULT_ENV_VERSION, CalvinSceneEnv, resolve_env_version

        env_version = resolve_env_version(args.env_version or DEFAULT_ENV_VERSION)
        make_env = functools.partial(CalvinSceneEnv, args.data_path, env_version=env_version)
        simulator = f"our CALVIN scene (pybullet), calvin_env {env_version} behaviour"
    else:
        from vla_parl.envs.calvin.official import OfficialCalvinEnv, official_commit

        env_version = official_commit()
        if args.env_version and env_version and not env_version.startswith(args.env_version[:7]):
            raise ConfigError(f"--env-version {args.env_version} but the installed calvin_env checkout is at "
                              f"{env_version}: check out that commit there, or drop --env-version")
        make_env = functools.partial(OfficialCalvinEnv, args.data_path)
        simulator = f"the official calvin_env at commit {env_version or 'unknown (not a git checkout)'}"
    print(f"simulator: {simulator}")
    chains = None
    if args.chains:
        start, sep, stop = args.chains.partition(":")
        if not sep or not start.isdigit() or not stop.isdigit():
            raise ConfigError(f"--chains {args.chains!r} must look like START:STOP, e.g. 0:50")
        chains = list(range(int(start), min(int(stop), args.num_sequences)))
    make_policy = functools.partial(OpenVLACalvinPolicy, args.checkpoint, args.unnorm_key, args.critic,
                                    args.num_samples, args.top_k, args.local_steps, args.step_size, device=args.device)
    OpenVLACalvinPolicy(args.checkpoint, args.unnorm_key, device=args.device).reset()  # validate before spawning
    summary = evaluate_calvin(make_env, make_policy, args.output_dir, num_sequences=args.num_sequences,
                              chains=chains, num_workers=args.workers, ep_len=args.ep_len)
    print(f"average length {summary['avg_seq_len']:.3f}; success@1..5 "
          + " ".join(f"{v:.3f}" for v in summary["chain_sr"].values()) + f" ({simulator})")
    print(f"wrote {args.output_dir}/results.json")
    return 0


_TABLETOP_DEFAULTS = {"task": "reach", "episodes": 40, "seed": 10_000, "image_size": 56, "max_episode_steps": 25,
                      "targets": None}


def _run_settings(checkpoint: str) -> tuple[dict[str, Any], Path | None]:
    """The environment and evaluation settings of the run that exported `checkpoint` (`<run>/final/model` beside
    `<run>/config.yaml`, as the sft, parl and demo recipes write it), as `eval tabletop` option names."""
    import yaml

    path = Path(checkpoint).expanduser().resolve().parent.parent / "config.yaml"
    if not path.is_file():
        return {}, None
    config = yaml.safe_load(path.read_text()) or {}
    data, evaluation = config.get("data") or {}, config.get("eval") or {}
    if data.get("kind") != "tabletop":
        return {}, None
    settings = {"task": data.get("task"), "image_size": data.get("env_image_size"),
                "max_episode_steps": data.get("max_episode_steps"), "targets": data.get("targets"),
                "episodes": evaluation.get("episodes"), "seed": evaluation.get("seed"),
                "num_samples": evaluation.get("vgps_num_samples")}
    return {k: v for k, v in settings.items() if v is not None}, path


def _load_policy(checkpoint: str, unnorm_key: str | None) -> tuple[Any, Any]:
    """The `Policy` in `checkpoint` — an OpenVLA (greedy alone), or the diffusion/Gaussian policy a
    `policy.type=...` run saved (one sample alone) — and the instruction tokenizer its critics embed with
    (None: the critic's own hashed words)."""
    from vla_parl.training.builders import load_bc_policy

    policy = load_bc_policy(checkpoint)
    if policy is not None:
        if unnorm_key is not None and unnorm_key != policy.unnorm_key:
            from vla_parl.errors import ConfigError

            raise ConfigError(f"--unnorm-key {unnorm_key}: {checkpoint} holds a {type(policy).__name__} with the "
                              f"statistics of {policy.unnorm_key!r} only; drop --unnorm-key")
        return policy.eval(), None
    from vla_parl.models import OpenVLA
    from vla_parl.policy.openvla import OpenVLAPolicy

    model = OpenVLA.from_pretrained(checkpoint)
    return OpenVLAPolicy(model, unnorm_key=unnorm_key), model.processor.tokenizer.encode_batch


def _tabletop(args: argparse.Namespace) -> int:
    import json

    _check_inputs(args)
    from vla_parl.eval.tabletop import evaluate_tabletop, improvement_actor, policy_actor

    run, source = _run_settings(args.checkpoint)
    for name, default in _TABLETOP_DEFAULTS.items():   # flag > the run's setting > the built-in default
        if getattr(args, name) is None:
            setattr(args, name, run.get(name, default))
    if args.num_samples is None and args.critic:       # the demo's evaluation N (eval.vgps_num_samples)
        args.num_samples = run.get("num_samples")
    if source is not None:
        print(f"settings from {source}: task {args.task}, targets {args.targets or 'all'}, {args.image_size} px, "
              f"{args.max_episode_steps}-step episodes, {args.episodes} episodes from seed {args.seed}")
    policy, tokenize = _load_policy(args.checkpoint, args.unnorm_key)
    actors = {"policy": policy_actor(policy, seed=args.seed)}
    operator = None
    if args.critic:
        from vla_parl.critic import QCritic
        from vla_parl.parl import ImprovementConfig, ImprovementOperator

        critic = QCritic.load(args.critic, tokenize=tokenize).eval()
        # the tabletop demo's settings for a critic saved without its own
        legacy = ImprovementConfig(num_samples=16, top_k=4, num_steps=10, step_size=0.05)
        operator = ImprovementOperator.from_critic(critic, policy, fallback=legacy, **_operator_overrides(args))
        actors["operator"] = improvement_actor(operator, seed=args.seed)
    from vla_parl.demo.report import save_gif
    from vla_parl.utils.files import atomic_write_text

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for acting, act in actors.items():
        result = evaluate_tabletop(act, task=args.task, episodes=args.episodes, seed=args.seed,
                                   unnormalize=policy.unnormalize, image_size=args.image_size,
                                   max_episode_steps=args.max_episode_steps, targets=args.targets, record=args.gif)
        rows[acting] = result.summary()
        label = "policy alone" if acting == "policy" else "policy + operator"
        for i, frames in enumerate(result.frames):
            outcome = "success" if result.successes[i] else "failure"
            save_gif(out / f"rollout_{acting}_{i}.gif", list(frames), caption=f"{label}, episode {i}: {outcome}")
        low, high = result.interval
        print(f"{args.task} ({label}): success {100 * result.success_rate:.1f}% "
              f"({rows[acting]['successes']}/{result.episodes}, 95% CI {100 * low:.0f}–{100 * high:.0f}%)")
    main = "operator" if operator is not None else "policy"
    summary = {"task": args.task, "mode": "refined" if operator is not None else "greedy",
               "checkpoint": str(args.checkpoint), **rows[main], "rows": rows,
               "settings": {"targets": args.targets, "image_size": args.image_size,
                            "max_episode_steps": args.max_episode_steps, "seed": args.seed,
                            "from": str(source) if source else None}}
    if operator is not None:
        summary["improvement"] = operator.config.to_dict()
    atomic_write_text(out / "tabletop_results.json", json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'tabletop_results.json'}")
    return 0
