"""The robot-side client, re-exported: `PolicyClient` lives in the torch-free `vla_parl_client` package
(client/ in this repository, installable alone as the `vla-parl-client` distribution; `vla-parl` ships it
too). `from serving import PolicyClient` and `from serving.client import PolicyClient` keep working.
"""

from __future__ import annotations

from vla_parl_client import PolicyClient, PolicyServerError, encode_png

__all__ = ["PolicyClient", "PolicyServerError", "encode_png"]
