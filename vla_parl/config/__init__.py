"""Typed YAML configs for recipes (see `vla_parl.config.schema`)."""

from vla_parl.config.schema import apply_overrides, from_dict, load_config, parse_overrides, to_dict, to_yaml

__all__ = ["apply_overrides", "from_dict", "load_config", "parse_overrides", "to_dict", "to_yaml"]
