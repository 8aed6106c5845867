"""Built-in YAML configs for the recipes. Installed as `vla_parl.configs` (see `vla-parl ls` / `vla-parl cp`)."""
