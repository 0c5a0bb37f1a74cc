"""The fast executor: everything that makes inference fast, built from the reference modules.

`PhaselocknetModel.forward` is the one place that chooses between the reference modules and
this executor (see `PhaselocknetModel._executor`); the executor is rebuilt when the model's
weights, device or dtype change (`executor.weights_stamp`).

  front_end   the cochlea by FFT (float64), decimation in the frequency domain
  conv        one convolution: folded batch norm, fused relu, FFT along time (`conv_fft`)
  layers      separable Hann pooling, reshape-based max pooling
  plan        fusion and streaming of the CNN's layers into steps
  network     runs the CNN's plans
  executor    FastExecutor and the rebuild rule
"""

from .executor import FastExecutor, stamps_equal, weights_stamp

__all__ = ["FastExecutor", "stamps_equal", "weights_stamp"]
