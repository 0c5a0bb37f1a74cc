"""Constants shared across the package, each defined once."""

# How spike counts are formed from rates: binomial draws as in the paper, or their expected value.
SPIKE_MODES = ("sample", "mean")
# Every published nervegram has 50 characteristic frequencies; configs of nervegram-input
# localization models do not restate it.
NERVEGRAM_N_FREQ = 50
# dB SPL reference pressure: 20 micropascals.
REFERENCE_PRESSURE_PA = 20e-6
# File names of the authors' model directories, of bundles and of the weights manifest.
CONFIG_NAME = "config.json"
ARCH_NAME = "arch.json"
BUNDLE_SUFFIX = ".safetensors"
MANIFEST_NAME = "weights_manifest.json"  # all published models (the repository's)
CONVERTED_MANIFEST_NAME = "manifest.json"  # what phaselocknet-convert wrote into a bundle directory
# Which implementation runs a model: the fast executor (default) or the reference modules.
BACKENDS = ("fast", "reference")
