#!/usr/bin/env python
"""One PA-RL iteration (sample + optimize + distill), with and without gradient checkpointing
(same as `vla-parl bench parl_step`)."""

import sys

from vla_parl.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "parl_step", *sys.argv[1:]]))
