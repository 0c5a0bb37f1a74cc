"""phaselocknet-convert: the authors' TensorFlow checkpoints -> phaselocknet bundles.

The only package of the project that imports TensorFlow (and only where a checkpoint
is read: building the manifest and the command-line parsing work without it).

    from phaselocknet_convert import convert_model_dir
    result = convert_model_dir("models/sound_localization/IHC3000/arch01", "bundles/",
                               model_id="sound_localization/IHC3000/arch01")
"""

from __future__ import annotations

# Written into every bundle (metadata "converter_version"); bump it whenever the
# tensors a checkpoint converts to could change, so old bundles can be told apart.
CONVERTER_VERSION = "1.0.0"

from .errors import ConversionError  # noqa: E402
from .convert import ConversionResult, convert_model_dir  # noqa: E402

__all__ = ["CONVERTER_VERSION", "ConversionError", "ConversionResult", "convert_model_dir"]
