"""`vla-parl eval calvin|bridge|tabletop`: evaluate a checkpoint (CALVIN protocol, RLDS offline metrics, simulator)."""

from __future__ import annotations

import argparse

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
    bridge.add_argument("--split", default="train", help="TFDS split, e.g. 'val' or 'train[95%%:]'")
    bridge.add_argument("--unnorm-key", default=None, help="statistics to normalise with (default: --dataset)")
    bridge.add_argument("--critic", default=None, help="critic dir (QCritic.save) for PA-RL-refined actions")
    bridge.add_argument("--num-samples", type=int, default=32)
    bridge.add_argument("--top-k", type=int, default=10)
    bridge.add_argument("--local-steps", type=int, default=10)
    bridge.add_argument("--step-size", type=float, default=3e-4)
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
    calvin.add_argument("--num-samples", type=int, default=32)
    calvin.add_argument("--simulator", choices=["ours", "official"], default="ours",
                        help="'ours': vla_parl's CALVIN scene (pybullet); 'official': a calvin_env install")
    calvin.add_argument("--data-path", default=None, help="CALVIN assets (ours) or dataset dir (official)")
    calvin.add_argument("--num-sequences", type=int, default=1000)
    calvin.add_argument("--chains", default=None, help="evaluate a slice of the sequences, e.g. 0:50")
    calvin.add_argument("--ep-len", type=int, default=360, help="steps per subtask (360 in the benchmark)")
    calvin.add_argument("--workers", type=int, default=1)
    calvin.add_argument("--device", default="cpu")
    calvin.add_argument("--output-dir", required=True)
    calvin.set_defaults(handler=_calvin)

    tabletop = kinds.add_parser("tabletop", help="success rate on the built-in simulator (seeded episodes, 95%% CI)",
                                description="Success rate of a checkpoint on the built-in pybullet tabletop over a "
                                            "fixed set of seeded episodes, greedy or critic-re-ranked.")
    tabletop.add_argument("--checkpoint", required=True, help="OpenVLA checkpoint dir (e.g. runs/demo/final/model)")
    tabletop.add_argument("--task", default="reach", choices=["reach", "push", "lift"])
    tabletop.add_argument("--episodes", type=int, default=40)
    tabletop.add_argument("--seed", type=int, default=10_000, help="episode i resets with seed + i")
    tabletop.add_argument("--unnorm-key", default=None)
    tabletop.add_argument("--critic", default=None, help="critic dir: act by re-ranking + local steps (PA-RL operator)")
    tabletop.add_argument("--num-samples", type=int, default=16)
    tabletop.add_argument("--top-k", type=int, default=4)
    tabletop.add_argument("--local-steps", type=int, default=10)
    tabletop.add_argument("--step-size", type=float, default=0.05)
    tabletop.add_argument("--image-size", type=int, default=56, help="rendered frame size the policy sees")
    tabletop.add_argument("--max-episode-steps", type=int, default=25)
    tabletop.add_argument("--gif", type=int, default=0, help="record the first N episodes as rollout GIFs")
    tabletop.add_argument("--output-dir", required=True)
    tabletop.set_defaults(handler=_tabletop)


def _bridge(args: argparse.Namespace) -> int:
    import torch

    from vla_parl.data import iter_steps
    from vla_parl.eval.bridge import evaluate_actions, write_results
    from vla_parl.models import OpenVLA
    from vla_parl.parl.action_optimizer import ActionOptimizer

    model = OpenVLA.from_pretrained(args.checkpoint, device=args.device)
    unnorm_key = args.unnorm_key or (args.dataset if args.dataset in model.norm_stats else None)
    critic = None
    if args.critic:
        from vla_parl.critic import QCritic

        tokenizer = model.processor.tokenizer
        critic = QCritic.load(args.critic, tokenize=tokenizer.encode_batch, map_location=args.device)
    steps = iter_steps(args.data_dir, args.dataset, split=args.split)
    optimizer = ActionOptimizer(top_k=args.top_k, num_steps=args.local_steps, step_size=args.step_size)
    with torch.inference_mode(critic is None):
        result = evaluate_actions(model, steps, unnorm_key, batch_size=args.batch_size, max_steps=args.max_steps,
                                  critic=critic, optimizer=optimizer, num_samples=args.num_samples)
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

    from vla_parl.eval.calvin import evaluate_calvin
    from vla_parl.eval.calvin_vla import OpenVLACalvinPolicy
    from vla_parl.errors import ConfigError

    if args.simulator == "ours":
        from vla_parl.envs.calvin_scene import CalvinSceneEnv

        make_env = functools.partial(CalvinSceneEnv, args.data_path)
    else:
        from vla_parl.envs.calvin_official import OfficialCalvinEnv

        make_env = functools.partial(OfficialCalvinEnv, args.data_path)
    chains = None
    if args.chains:
        start, sep, stop = args.chains.partition(":")
        if not sep or not start.isdigit() or not stop.isdigit():
            raise ConfigError(f"--chains {args.chains!r} must look like START:STOP, e.g. 0:50")
        chains = list(range(int(start), min(int(stop), args.num_sequences)))
    make_policy = functools.partial(OpenVLACalvinPolicy, args.checkpoint, args.unnorm_key, args.critic,
                                    args.num_samples, device=args.device)
    OpenVLACalvinPolicy(args.checkpoint, args.unnorm_key, device=args.device).reset()  # validate before spawning
    summary = evaluate_calvin(make_env, make_policy, args.output_dir, num_sequences=args.num_sequences,
                              chains=chains, num_workers=args.workers, ep_len=args.ep_len)
    print(f"average length {summary['avg_seq_len']:.3f}; success@1..5 "
          + " ".join(f"{v:.3f}" for v in summary["chain_sr"].values()))
    print(f"wrote {args.output_dir}/results.json")
    return 0


def _tabletop(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from vla_parl.eval.tabletop import evaluate_tabletop, greedy_actor, reranking_actor
    from vla_parl.models import OpenVLA
    from vla_parl.policy.openvla import OpenVLAPolicy

    model = OpenVLA.from_pretrained(args.checkpoint)
    policy = OpenVLAPolicy(model, unnorm_key=args.unnorm_key)
    if args.critic:
        from vla_parl.critic import QCritic
        from vla_parl.parl import ActionOptimizer

        critic = QCritic.load(args.critic, tokenize=model.processor.tokenizer.encode_batch).eval()
        optimizer = ActionOptimizer(top_k=args.top_k, num_steps=args.local_steps, step_size=args.step_size)
        act, mode = reranking_actor(policy, critic, optimizer, args.num_samples, seed=args.seed), "refined"
    else:
        act, mode = greedy_actor(policy), "greedy"
    result = evaluate_tabletop(act, task=args.task, episodes=args.episodes, seed=args.seed,
                               unnormalize=policy.unnormalize, image_size=args.image_size,
                               max_episode_steps=args.max_episode_steps, record=args.gif)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"task": args.task, "mode": mode, "checkpoint": str(args.checkpoint), **result.summary()}
    (out / "tabletop_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    if result.frames:
        import imageio.v2 as imageio

        for i, frames in enumerate(result.frames):
            imageio.mimsave(out / f"rollout_{i}.gif", list(frames), duration=0.1, loop=0)
    low, high = result.interval
    print(f"{args.task} ({mode}): success {100 * result.success_rate:.1f}% "
          f"({summary['successes']}/{result.episodes}, 95% CI {100 * low:.0f}–{100 * high:.0f}%)")
    print(f"wrote {out / 'tabletop_results.json'}")
    return 0
