"""Demo-only machinery: report, summary, learning curves and rollout GIFs of `vla-parl run demo`."""
