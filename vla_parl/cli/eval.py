"""`vla-parl eval bridge ...`: offline evaluation of a checkpoint on a held-out RLDS split."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a policy (bridge: offline action metrics on RLDS data)",
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
