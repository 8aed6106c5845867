"""A robot's control loop against a policy server: labelled episodes for online PA-RL.

    vla-parl serve --checkpoint CKPT --critic CRITIC --episodes runs/episodes &
    python -m serving.example_robot_loop --url http://127.0.0.1:8000 --episodes 2

Every episode is recorded on the server: reset the robot, `start_episode`, then read the camera (and
proprioception), `act` with the episode id, execute the action, repeat; at the end label it — a callback
(here the simulator's own success signal) or, when run in a terminal, the operator types y/n — and
`end_episode` stores it for the learner. Robots collect in mode "refined" (PA-RL's improvement operator)
when the server has a critic, else "greedy".

On a real robot, replace `make_robot` with your driver: an object with `reset()`, `get_image()`,
`get_proprio()` and `apply_action(action) -> episode over?` (`vla_parl_client.Robot`). This file needs only
the torch-free client (`pip install ./client` gives `vla_parl_client`); the simulated tabletop it drives
when run as it is comes from vla-parl.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from vla_parl_client import (PolicyClient, PolicyServerError, Robot, collection_mode, keyboard_label,
                             run_episode)

__all__ = ["make_robot", "choose_label", "main"]


def make_robot(args: argparse.Namespace) -> Robot:
    """The robot to drive (a `Robot` with a `close()`). Here: the built-in pybullet tabletop, episode e on
    seed e; put your driver here."""
    from vla_parl.envs.tabletop_robot import TabletopRobot

    return TabletopRobot(args.task, seeds=range(args.episodes), image_size=args.image_size,
                         max_episode_steps=args.max_steps)


def choose_label(robot: Any, how: str, interactive: bool) -> Callable[[], bool]:
    """The success label: "keyboard" (y/n after each episode), "robot" (the robot's own `success` after the
    episode, as a simulator knows it) or "auto" (keyboard in a terminal, else the robot's)."""
    if how == "keyboard" or (how == "auto" and interactive):
        return keyboard_label()
    if not hasattr(robot, "success"):
        raise ValueError(f"{type(robot).__name__} reports no success of its own: label episodes with "
                         "--label keyboard (in a terminal)")
    return lambda: bool(robot.success)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=os.environ.get("VLA_PARL_API_KEY"))
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=20, help="actions per episode at most")
    parser.add_argument("--mode", default=None, choices=["greedy", "sample", "refined"],
                        help="default: refined when the server has a critic, else greedy")
    parser.add_argument("--label", default="auto", choices=["auto", "keyboard", "robot"],
                        help="who says whether an episode succeeded (auto: keyboard in a terminal, else the robot)")
    parser.add_argument("--unnorm-key", default=None)
    parser.add_argument("--task", default="reach", help="simulated tabletop task: reach, push or lift")
    parser.add_argument("--image-size", type=int, default=56, help="simulated camera image side (pixels)")
    args = parser.parse_args(argv)

    robot = make_robot(args)
    try:
        label = choose_label(robot, args.label, sys.stdin.isatty())
        with PolicyClient(args.url, api_key=args.api_key, timeout=30.0) as client:
            info = client.metadata()
            mode = args.mode or collection_mode(info)
            if mode not in info["modes"]:
                raise ValueError(f"the server at {args.url} offers modes {info['modes']}, not --mode {mode}"
                                 + (": start it with a critic (--critic CRITIC)" if mode == "refined" else ""))
            print(f"server: {info['model']['checkpoint']} modes={info['modes']} policy version "
                  f"{info.get('policy_version', 0)}; collecting in mode {mode}")
            successes = 0
            for episode in range(args.episodes):
                result = run_episode(client, robot, label=label, max_steps=args.max_steps, mode=mode,
                                     unnorm_key=args.unnorm_key, metadata={"robot": "example_robot_loop"})
                successes += result.success
                print(f"episode {episode}: {'success' if result.success else 'failure'} in {result.steps} steps "
                      f"(policy version {result.policy_versions[0]}, "
                      f"{sum(result.latencies_ms) / result.steps:.1f} ms/step) stored as {result.episode_id}")
    except (PolicyServerError, ValueError) as exc:   # unreachable server, wrong key or mode, a rejected request
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        robot.close()                               # release the robot (the simulator's pybullet client)
    print(f"success rate {successes}/{args.episodes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
