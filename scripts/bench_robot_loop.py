#!/usr/bin/env python
"""Robot loop benchmark: robot-visible action latency with the learner idle vs training, the longest request during
a policy swap, episodes per minute (same as `vla-parl bench robot_loop`; --quick: about two minutes)."""

import sys

from vla_parl.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "robot_loop", *sys.argv[1:]]))
