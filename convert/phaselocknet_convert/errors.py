"""The one exception type every conversion failure is reported as."""

from __future__ import annotations


class ConversionError(Exception):
    """A model directory cannot be converted; the message names the file or layer and why."""
