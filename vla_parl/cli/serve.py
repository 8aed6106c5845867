"""`vla-parl serve`: serve an OpenVLA checkpoint (and optionally a PA-RL critic) over HTTP.

    vla-parl serve --checkpoint runs/parl/final/model [--critic runs/parl/final/critic] [--port 8000]
                   [--episodes runs/robot/episodes] [--policy-updates runs/robot/publish]

Binds 127.0.0.1 unless `--host` says otherwise. The API key may come from `--api-key`, `--api-key-file`
or the VLA_PARL_API_KEY environment variable (the last two keep it out of the process list).
Also runnable as `python -m vla_parl.cli.serve ...`.
"""

from __future__ import annotations

import argparse
import os
import sys

from vla_parl.cli._arguments import discount, positive_int, positive_seconds

__all__ = ["register", "main"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a checkpoint over HTTP (OpenVLA-compatible /act plus a typed /v1 API)",
        description="Serve an OpenVLA checkpoint with dynamic batching; with --critic, also PA-RL refined actions. "
                    "See docs/serving.md.")
    _add_arguments(parser)
    parser.set_defaults(handler=_run)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="OpenVLA checkpoint directory (or hub id)")
    parser.add_argument("--critic", default=None, help="QCritic directory (QCritic.save) enabling mode=refined")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="require this key (X-API-Key or Authorization: Bearer)")
    parser.add_argument("--api-key-file", default=None, help="read the API key from this file")
    parser.add_argument("--max-batch-size", type=positive_int, default=16, help="rows per batched model call "
                        "(1 disables dynamic batching)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    parser.add_argument("--max-queue-size", type=positive_int, default=1024, help="waiting requests before 503")
    parser.add_argument("--max-request-bytes", type=positive_int, default=16 * 1024 * 1024)
    parser.add_argument("--max-image-pixels", type=positive_int, default=4096 * 4096)
    parser.add_argument("--max-batch-items", type=positive_int, default=64, help="rows in one /v1/act/batch call")
    parser.add_argument("--max-num-samples", type=positive_int, default=64)
    refined = parser.add_argument_group(
        "refined mode (PA-RL improvement operator)",
        "Unset flags take the settings saved with --critic (a critic saved without them: 16 samples, top-10, 10 "
        "steps of 3e-4); requests override num_samples, top_k and steps per call.")
    refined.add_argument("--num-samples", type=positive_int, default=None, help="default policy samples per request")
    refined.add_argument("--top-k", type=positive_int, default=None, help="default candidates kept for ascent")
    refined.add_argument("--steps", type=int, default=None, help="default gradient-ascent steps on Q")
    refined.add_argument("--step-size", type=float, default=None, help="gradient-ascent step size")
    parser.add_argument("--device", default=None, help="e.g. cuda:0 (default: cpu)")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--header-timeout", type=positive_seconds, default=10.0,
                        help="seconds a connection may take to send a complete request head before it is closed")
    parser.add_argument("--body-timeout", type=positive_seconds, default=30.0,
                        help="seconds a request body may take to arrive (408 and the connection closed after)")
    parser.add_argument("--timeout-keep-alive", type=positive_seconds, default=5.0,
                        help="seconds an idle kept-alive connection stays open between requests")
    robot = parser.add_argument_group(
        "robot loop (episodes and policy updates; docs/serving.md 'Episodes')",
        "With --episodes, robots record episodes through /v1/episodes and /v1/act (episode_id); finished ones are "
        "written to DIR, a replay store the learner reads. With --policy-updates, new policy versions published "
        "in DIR (v1, v2, ...) are loaded and swapped in between batches.")
    robot.add_argument("--episodes", default=None, metavar="DIR", help="store finished episodes in this replay store")
    robot.add_argument("--episode-timeout", type=positive_seconds, default=300.0,
                       help="seconds without a call after which an open episode is discarded")
    robot.add_argument("--max-episode-steps", type=positive_int, default=1000, help="steps one episode may record")
    robot.add_argument("--max-open-episodes", type=positive_int, default=32,
                       help="episodes open at once (each holds its images in memory until it ends)")
    robot.add_argument("--episode-gamma", type=discount, default=0.99,
                       help="discount of the Monte-Carlo returns stored with each episode")
    robot.add_argument("--policy-updates", default=None, metavar="DIR",
                       help="publish directory to watch for new policy versions (also POST /v1/admin/reload)")
    robot.add_argument("--policy-poll-s", type=positive_seconds, default=2.0,
                       help="seconds between looks at --policy-updates DIR")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def _api_key(args: argparse.Namespace) -> str | None:
    from vla_parl.errors import ConfigError

    if args.api_key and args.api_key_file:
        raise ConfigError("pass --api-key or --api-key-file, not both")
    if args.api_key_file:
        try:
            key = open(args.api_key_file, encoding="utf-8").read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --api-key-file {args.api_key_file}: {exc}") from exc
        if not key:
            raise ConfigError(f"--api-key-file {args.api_key_file} is empty")
        return key
    return args.api_key or os.environ.get("VLA_PARL_API_KEY") or None


def _run(args: argparse.Namespace) -> int:
    from vla_parl.cli._paths import check_model_source
    from vla_parl.errors import MissingExtraError

    check_model_source(args.checkpoint, "--checkpoint")   # a mistyped run dir: a missing directory, not a hub id
    check_model_source(args.critic, "--critic")
    try:
        import uvicorn

        from serving.app import ServerConfig, create_app
        from serving.engine import PolicyEngine
        from serving.timeouts import uvicorn_config
    except ImportError as exc:
        raise MissingExtraError.for_package((exc.name or "fastapi").split(".")[0], "serve",
                                            "vla-parl serve") from exc
    api_key = _api_key(args)
    config = ServerConfig(host=args.host, port=args.port, api_key=api_key, max_batch_size=args.max_batch_size,
                          max_wait_ms=args.max_wait_ms, max_queue_size=args.max_queue_size,
                          max_request_bytes=args.max_request_bytes, max_image_pixels=args.max_image_pixels,
                          max_batch_items=args.max_batch_items, max_num_samples=args.max_num_samples,
                          header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                          timeout_keep_alive=args.timeout_keep_alive, episodes_dir=args.episodes,
                          episode_timeout=args.episode_timeout, max_episode_steps=args.max_episode_steps,
                          max_open_episodes=args.max_open_episodes, episode_gamma=args.episode_gamma,
                          policy_updates_dir=args.policy_updates, policy_poll_s=args.policy_poll_s)
    if args.host not in _LOOPBACK and api_key is None:
        print(f"vla-parl serve: warning: binding {args.host} without an API key — anyone who can reach this "
              "port can drive the robot policy; set --api-key-file or VLA_PARL_API_KEY", file=sys.stderr)
    engine = PolicyEngine.load(args.checkpoint, args.critic, device=args.device, dtype=args.dtype,
                               overrides={"num_samples": args.num_samples, "top_k": args.top_k,
                                          "num_steps": args.steps, "step_size": args.step_size})
    op = engine.improvement
    refined = (f" (refined: N={op.num_samples}, top-{op.top_k}, {op.num_steps} steps of {op.step_size:g})"
               if op is not None else "")
    print(f"vla-parl serve: {args.checkpoint} (unnorm keys: {', '.join(engine.unnorm_keys)}; critic: "
          f"{args.critic or 'none'}{refined}) on http://{args.host}:{args.port}  batching: max "
          f"{args.max_batch_size} rows, {args.max_wait_ms} ms; API key {'required' if api_key else 'off'}"
          + (f"; episodes -> {args.episodes}" if args.episodes else "")
          + (f"; policy updates <- {args.policy_updates}" if args.policy_updates else ""), file=sys.stderr, flush=True)
    _log_to_stderr("vla_parl.serving", args.log_level)   # episodes stored, policy versions loaded or refused
    app = create_app(engine, config)
    uvicorn.Server(uvicorn_config(app, host=args.host, port=args.port,
                                  log_level=args.log_level, access_log=args.log_level == "debug",
                                  header_timeout=config.header_timeout,
                                  timeout_keep_alive=config.timeout_keep_alive)).run()
    return 0


def _log_to_stderr(name: str, level: str) -> None:
    """The server's own log lines (logger `name` and its children) on stderr at `level`, as uvicorn's are."""
    import logging

    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m vla_parl.cli.serve`), same flags as `vla-parl serve`."""
    from vla_parl.errors import VLAParlError

    parser = argparse.ArgumentParser(prog="vla-parl serve", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except VLAParlError as exc:
        print(f"vla-parl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
