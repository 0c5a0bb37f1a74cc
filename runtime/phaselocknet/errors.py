"""The project's error family: every refusal of bad input is one of these.

All are ``ValueError`` subclasses (bad values, not bugs), so callers that already catch
``ValueError`` keep working; the command line maps each class to an exit code
(docs/cli.md). Messages name the problem and the fix.
"""

from __future__ import annotations


class PhaselocknetError(ValueError):
    """Base of every error phaselocknet raises for bad input, files or results."""


class ConfigError(PhaselocknetError):
    """A config.json / arch.json value is missing, malformed or out of bounds (docs/limits.md)."""


class BundleError(PhaselocknetError):
    """A bundle file is missing, damaged, foreign or inconsistent."""


class ConversionError(PhaselocknetError):
    """A model directory cannot be converted; the message names the file or layer and why."""


class InputError(PhaselocknetError):
    """An input (array, sound file, data set) cannot be fed to the model as given."""


class NonFiniteOutputError(PhaselocknetError):
    """The model produced NaN or Inf logits; ``layer`` names the first layer whose output
    went non-finite ("input" when the values fed in already were, "front_end" for the
    auditory-nerve stage) and ``examples`` the batch rows concerned."""

    def __init__(self, message: str, layer: str | None = None, examples: list[int] | None = None):
        super().__init__(message)
        self.layer = layer
        self.examples = list(examples or [])


class DeviceError(PhaselocknetError):
    """The requested torch device does not exist or is not available to this torch build."""
