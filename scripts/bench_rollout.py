#!/usr/bin/env python
"""Parallel rollout benchmark: env steps/s at 1, 2 and 4 workers (same as `vla-parl bench rollout`)."""

import sys

from vla_parl.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "rollout", *sys.argv[1:]]))
