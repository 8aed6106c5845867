"""Model implementations. `vla_parl.models.OpenVLA` is the OpenVLA-7B family."""

from vla_parl.models.openvla import OpenVLA, OpenVLAConfig, OpenVLAProcessor, openvla_7b, openvla_tiny

__all__ = ["OpenVLA", "OpenVLAConfig", "OpenVLAProcessor", "openvla_7b", "openvla_tiny"]
