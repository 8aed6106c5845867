"""REST policy server for OpenVLA / PA-RL policies (`vla-parl serve`), its client and an example robot loop.

    from serving import PolicyEngine, ServerConfig, create_app      # server side (pip install 'vla-parl[serve]')
    from serving import PolicyClient                                 # robot side

Importing `serving` is cheap; FastAPI, uvicorn, torch and the model load only when the names are used.
See docs/serving.md.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PolicyEngine", "ServerConfig", "create_app", "ServerThread", "DynamicBatcher", "PolicyClient",
           "PolicyServerError"]

_LOCATIONS = {
    "PolicyEngine": "serving.engine", "ServerConfig": "serving.app", "create_app": "serving.app",
    "ServerThread": "serving.app", "DynamicBatcher": "serving.batching", "PolicyClient": "serving.client",
    "PolicyServerError": "serving.client",
}


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module 'serving' has no attribute {name!r}")
    try:
        module = importlib.import_module(_LOCATIONS[name])
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in ("fastapi", "uvicorn", "pydantic", "starlette", "json_numpy",
                                                   "requests"):
            from vla_parl.errors import MissingExtraError

            raise MissingExtraError.for_package(exc.name.split(".")[0], "serve", "serving") from exc
        raise
    return getattr(module, name)
