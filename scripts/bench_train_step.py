#!/usr/bin/env python
"""SFT step time, 1 process vs 2-process DDP/FSDP2 (same as `vla-parl bench train_step`)."""

import sys

from vla_parl.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "train_step", *sys.argv[1:]]))
