"""Error types the light modules share (no torch import: ``entropic-nas --version`` and
``--help`` stay instant)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config file is malformed; the message names the file and the field."""
