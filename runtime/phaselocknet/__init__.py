"""Pure-PyTorch runtime for the phaselocknet auditory models."""
__version__ = "0.1.0"
