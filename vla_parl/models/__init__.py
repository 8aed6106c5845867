"""Model implementations. `vla_parl.models.OpenVLA` is the OpenVLA-7B family.

Importing this package is torch-free (the names load on first use), so torch-free configs such as
`vla_parl.models.openvla.configuration_lora.LoraSettings` can be read by recipe configs before any heavy import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OpenVLA", "OpenVLAConfig", "OpenVLAProcessor", "openvla_7b", "openvla_tiny"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vla_parl.models import openvla

        return getattr(openvla, name)
    raise AttributeError(f"module 'vla_parl.models' has no attribute {name!r}")
