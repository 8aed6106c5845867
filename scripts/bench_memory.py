#!/usr/bin/env python
"""OpenVLA-7B per-GPU memory plan on the meta device (same as `vla-parl bench memory`)."""

import sys

from vla_parl.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "memory", *sys.argv[1:]]))
