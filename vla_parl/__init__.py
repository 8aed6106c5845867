"""vla-parl: fine-tune OpenVLA with Policy-Agnostic RL and serve the improved policy.

Importing the package is cheap: heavy stacks (torch models, tensorflow, pybullet) load only when the
module that needs them is imported.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "OpenVLA"]


def __getattr__(name: str):
    if name == "OpenVLA":
        from vla_parl.models import OpenVLA

        return OpenVLA
    raise AttributeError(f"module 'vla_parl' has no attribute {name!r}")
