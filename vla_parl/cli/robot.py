"""`vla-parl robot sim`: the built-in tabletop as simulated robots that talk to a policy server over HTTP only;
`vla-parl robot report --episodes DIR [--out success.png]`: success per policy version of the stored episodes.

    vla-parl serve --checkpoint runs/demo/final/model --critic runs/demo/final/critic --episodes runs/episodes &
    vla-parl robot sim --url http://127.0.0.1:8000 --task reach --episodes 20 --processes 2

Each robot process runs recorded episodes through `vla_parl_client` (start_episode → act → end_episode with
the env's success), the way a lab's robots feed the online PA-RL learner; at the end it prints the success
rate per policy version. Defaults match the demo's tabletop (configs/demo.yaml: reach, red target, 20 steps,
84-pixel images). See vla_parl/rollout/sim_robot.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from vla_parl.cli._arguments import non_negative_int, positive_int, positive_seconds

__all__ = ["register", "DEFAULTS"]

#: the demo's tabletop settings (configs/demo.yaml data.*), so simulated robots collect what the demo trains on
DEFAULTS = {"task": "reach", "targets": ["red"], "max_steps": 20, "image_size": 84}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("robot", help="simulated robots that collect episodes from a policy server",
                                   description="Robots that talk to `vla-parl serve` over HTTP only.")
    commands = parser.add_subparsers(dest="robot_command", metavar="ROBOT_COMMAND", required=True)
    sim = commands.add_parser(
        "sim", help="run the built-in tabletop as remote robot(s) recording episodes on the server",
        description="Run the built-in pybullet tabletop as remote robots: each episode is recorded on the server "
                    "(start_episode → act → end_episode with the env's success). Defaults match the demo.")
    sim.add_argument("--url", required=True, help="policy server, e.g. http://127.0.0.1:8000")
    sim.add_argument("--api-key", default=os.environ.get("VLA_PARL_API_KEY"),
                     help="the server's API key (default: $VLA_PARL_API_KEY)")
    sim.add_argument("--task", default=DEFAULTS["task"], choices=["reach", "push", "lift"])
    sim.add_argument("--episodes", type=positive_int, default=10, help="episodes in all (default 10)")
    sim.add_argument("--processes", type=positive_int, default=1, help="robot processes (default 1)")
    sim.add_argument("--mode", default="auto", choices=["auto", "refined", "greedy", "sample"],
                     help="auto (default): refined when the server has a critic, else greedy")
    sim.add_argument("--targets", nargs="+", default=DEFAULTS["targets"], metavar="COLOUR",
                     help="target block colours a reset draws from (default: red; red, green, blue)")
    sim.add_argument("--seed", type=int, default=0, help="episode i uses env seed SEED + i (default 0)")
    sim.add_argument("--max-steps", type=positive_int, default=DEFAULTS["max_steps"], help="steps per episode")
    sim.add_argument("--image-size", type=positive_int, default=DEFAULTS["image_size"], help="camera image side")
    sim.add_argument("--unnorm-key", default=None, help="dataset statistics for the actions (default: the server's)")
    sim.add_argument("--timeout", type=positive_seconds, default=30.0, help="seconds per request (default 30)")
    sim.add_argument("--episodes-per-version", type=non_negative_int, default=0, metavar="K",
                     help="pace the robots to the learner: K episodes (all processes together) per policy version, "
                          "then wait for the server to serve a newer one (default 0: no pacing)")
    sim.add_argument("--version-wait", type=positive_seconds, default=3600.0, metavar="S",
                     help="with --episodes-per-version: seconds to wait for a newer version (default 3600)")
    sim.set_defaults(handler=_run_sim)
    report = commands.add_parser(
        "report", help="success per policy version of the episodes a server stored (table; --out: a plot)",
        description="Read the server's --episodes DIR (read-only, while it runs) and print each policy version's "
                    "episodes and success rate: the online PA-RL learning curve. See docs/robot.md.")
    report.add_argument("--episodes", required=True, metavar="DIR", help="the server's --episodes DIR")
    report.add_argument("--out", default=None, metavar="PNG", help="also plot success per version into this PNG")
    report.set_defaults(handler=_run_report)


def _run_sim(args: argparse.Namespace) -> int:
    from vla_parl.envs.tabletop import BLOCK_COLORS
    from vla_parl.errors import ConfigError

    unknown = [c for c in args.targets if c not in BLOCK_COLORS]
    if unknown:
        raise ConfigError(f"--targets {' '.join(unknown)}: not a block colour; use some of {', '.join(BLOCK_COLORS)}")
    try:
        from vla_parl_client import PolicyClient, PolicyServerError, collection_mode
    except ImportError as exc:
        from vla_parl.errors import MissingExtraError

        raise MissingExtraError.for_package(exc.name or "requests", "serve", "vla-parl robot sim") from exc
    from vla_parl.rollout.sim_robot import SimRobotSpec, run_sim_robots, success_by_version

    try:
        with PolicyClient(args.url, api_key=args.api_key, timeout=args.timeout) as client:
            metadata = client.metadata()
    except (PolicyServerError, ValueError) as exc:     # unreachable, wrong key, not a policy server, bad URL
        print(f"vla-parl robot sim: error: cannot use the policy server at {args.url}: {exc}", file=sys.stderr)
        return 2
    mode = collection_mode(metadata) if args.mode == "auto" else args.mode
    if mode not in metadata["modes"]:
        hint = " (start the server with a critic: vla-parl serve --checkpoint CKPT --critic CRITIC)"
        print(f"vla-parl robot sim: error: the server at {args.url} offers modes {metadata['modes']}, not --mode "
              f"{mode}{hint if mode == 'refined' else ''}", file=sys.stderr)
        return 2
    spec = SimRobotSpec(url=args.url, mode=mode, task=args.task, image_size=args.image_size,
                        max_steps=args.max_steps, targets=tuple(args.targets), unnorm_key=args.unnorm_key,
                        api_key=args.api_key, seed=args.seed, timeout=args.timeout,
                        episodes_per_version=args.episodes_per_version, version_wait_s=args.version_wait)
    # a paced robot runs at least one episode per version, so at most K processes
    processes = min(args.processes, args.episodes, args.episodes_per_version or args.episodes)
    print(f"robot sim: {args.episodes} {args.task} episode(s) on {processes} robot process(es), mode {mode}, "
          f"server {args.url} (policy version {metadata.get('policy_version', 0)})", flush=True)
    try:
        results = run_sim_robots(spec, args.episodes, processes)
    except PolicyServerError as exc:
        print(f"vla-parl robot sim: error: the policy server failed a robot request: {exc}", file=sys.stderr)
        return 2
    print("\npolicy version | episodes | successes | success rate")
    for version, (episodes, successes) in success_by_version(results).items():
        print(f"{version:>14} | {episodes:>8} | {successes:>9} | {successes / episodes:>11.1%}")
    successes = sum(e.success for e in results)
    print(f"{'all':>14} | {len(results):>8} | {successes:>9} | {successes / len(results):>11.1%}")
    swapped = sum(len(set(e.policy_versions)) > 1 for e in results)
    if swapped:
        print(f"({swapped} episode(s) saw a policy swap mid-episode; counted under their first step's version)")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from vla_parl.eval.robot_success import plot_success_by_version, success_by_policy_version

    rows = success_by_policy_version(args.episodes)
    print(f"{'policy version':>14} | episodes | labelled | successes | success rate")
    for row in rows:
        name = "upload" if row["policy_version"] is None else str(row["policy_version"])
        rate = "—" if row["success_rate"] is None else f"{row['success_rate']:.1%}"
        print(f"{name:>14} | {row['episodes']:>8} | {row['labelled']:>8} | {row['successes']:>9} | {rate:>12}")
    if args.out:
        print(f"wrote {plot_success_by_version(rows, args.out, title=f'{args.episodes}: success per policy version')}")
    return 0
