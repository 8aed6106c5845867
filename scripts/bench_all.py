#!/usr/bin/env python
"""Every benchmark with ratios to its baseline (same as `vla-parl bench all`; try --quick)."""

import sys

from vla_parl.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "all", *sys.argv[1:]]))
