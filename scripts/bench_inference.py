#!/usr/bin/env python
"""Greedy OpenVLA inference benchmark (same as `vla-parl bench inference`)."""

import sys

from vla_parl.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "inference", *sys.argv[1:]]))
