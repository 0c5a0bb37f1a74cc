"""The one exception type every conversion failure is reported as (the project's family, see phaselocknet.errors)."""

from __future__ import annotations

from phaselocknet.errors import ConversionError

__all__ = ["ConversionError"]
