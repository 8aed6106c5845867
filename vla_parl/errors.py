"""Exceptions that carry a message a user can act on (what is wrong, and how to fix it)."""

from __future__ import annotations

__all__ = ["VLAParlError", "CheckpointError", "ConfigError", "UnnormKeyError", "MissingExtraError"]


class VLAParlError(Exception):
    """Base class for errors raised by vla-parl on bad input."""


class CheckpointError(VLAParlError):
    """A checkpoint directory or file is missing, truncated, corrupt or inconsistent."""


class ConfigError(VLAParlError, ValueError):
    """A configuration value or key is invalid."""


class UnnormKeyError(VLAParlError, KeyError):
    """`unnorm_key` is missing or names no dataset in the model's normalisation statistics."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class MissingExtraError(VLAParlError, ImportError):
    """An optional dependency is not installed."""

    @classmethod
    def for_package(cls, package: str, extra: str, purpose: str) -> "MissingExtraError":
        return cls(f"{purpose} needs the '{package}' package, which is not installed. "
                   f"Install it with: pip install 'vla-parl[{extra}]'")
