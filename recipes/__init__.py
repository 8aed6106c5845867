"""Training recipes (torchtune-style: one file per recipe). Installed as `vla_parl.recipes`."""
