"""`vla-parl` command line: one sub-command module per concern, each exposing `register(subparsers)`.

Sub-command modules keep their heavy imports inside their handlers, so `vla-parl --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main", "build_parser", "quiet_third_party_logs"]

# name -> module under vla_parl.cli that defines `register(subparsers)`
_SUBCOMMAND_MODULES = ("run", "quickstart", "data", "eval", "serve", "robot", "bench", "push")


def build_parser() -> argparse.ArgumentParser:
    from vla_parl import __version__

    parser = argparse.ArgumentParser(
        prog="vla-parl",
        description="Fine-tune OpenVLA with Policy-Agnostic RL (PA-RL) and serve the improved policy.",
    )
    parser.add_argument("--version", action="version", version=f"vla-parl {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="keep third-party log output (TensorFlow, absl, gRPC); allowed anywhere on the line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"vla_parl.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"vla_parl.cli.{name}":
                continue  # sub-command not shipped in this build
            raise
        module.register(subparsers)
    return parser


def quiet_third_party_logs() -> None:
    """Silence the C++ log noise of TensorFlow / XLA / absl / gRPC (`failed call to cuInit`, oneDNN notices,
    ...) for the data commands; set before TensorFlow is imported (`--verbose` skips this)."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["GRPC_VERBOSITY"] = "ERROR"
    os.environ["GLOG_minloglevel"] = "3"
    from vla_parl.utils.quiet import QUIET_ENV

    os.environ[QUIET_ENV] = "1"           # pybullet's `build time` line on import
    import logging

    for name in ("tensorflow", "absl", "tensorflow_datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    if verbose:
        argv = [a for a in argv if a != "--verbose"]
    else:
        quiet_third_party_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from vla_parl.errors import VLAParlError

    try:
        return int(args.handler(args) or 0)
    except VLAParlError as exc:
        print(f"vla-parl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
