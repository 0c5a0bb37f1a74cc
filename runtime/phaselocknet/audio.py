"""Getting sounds into the form a model expects: rate, length, level, channels.

Waveforms here are numpy arrays laid out channels first, (time,) or (channels, time),
in pascals, like the model input.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import warnings

import numpy as np
import scipy.io.wavfile
import scipy.signal

from .constants import REFERENCE_PRESSURE_PA  # dB SPL re 20 uPa
from .errors import InputError

# Shortest sound worth classifying: 10 ms is about the ear's shortest integration time;
# anything shorter (a 1-sample file) is a broken file, not a sound.
MIN_SOUND_SECONDS = 0.01
# Levels accepted for --dbspl / level_db: below -30 dB SPL nothing is audible; above 150 dB
# SPL (630 Pa) the front end's sigmoids are long saturated and no model was trained there.
DBSPL_RANGE = (-30.0, 150.0)


def read_audio(path: str | Path) -> tuple[np.ndarray, float]:
    """(waveform (channels, time) float64, sample rate) of a WAV or FLAC file.

    Integer PCM is scaled to [-1, 1) (full scale = 1, i.e. 1 Pa = 94 dB SPL unless
    the level is set afterwards). FLAC needs the ``soundfile`` package.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sound file at {path}")
    if path.suffix.lower() == ".wav":
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", scipy.io.wavfile.WavFileWarning)
                rate, data = scipy.io.wavfile.read(path)
        except Exception as error:  # scipy raises several types on malformed files
            raise InputError(f"{path}: cannot decode WAV ({type(error).__name__}: {error})") from error
        for warning in caught:
            if "EOF" in str(warning.message):  # scipy returns what it found and only warns
                raise InputError(f"{path}: truncated WAV ({warning.message}); re-export or re-copy the file")
        data = pcm_to_float(data)
    else:
        try:
            import soundfile
        except ImportError as error:
            raise ValueError(f"{path}: reading {path.suffix} files needs the soundfile package (pip install soundfile)") from error
        try:
            data, rate = soundfile.read(str(path), dtype="float64", always_2d=False)
        except Exception as error:  # libsndfile errors surface as several types
            raise ValueError(f"{path}: cannot decode audio ({type(error).__name__}: {error})") from error
    data = data.T if data.ndim == 2 else data[np.newaxis]
    if not (np.isfinite(rate) and rate > 0):
        raise InputError(f"{path}: sample rate {rate} Hz in the header; the file is broken")
    return np.ascontiguousarray(data), float(rate)


def pcm_to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM scaled to [-1, 1) as float64 (full scale = 1 Pa); floats unchanged.

    The one scaling of integer samples: WAV files, HDF5 'signal' datasets and the CLI all
    use it, so 32767 in an int16 array is 1 Pa (94 dB SPL), never 32767 Pa.
    """
    data = np.asarray(data)
    if np.iscomplexobj(data):
        raise InputError("complex samples: sounds are real pressures; pass the real part explicitly if meant")
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        # 8-bit WAV is unsigned, centred on 128.
        offset = (info.max + 1) // 2 if info.min == 0 else 0
        return (data.astype(np.float64) - offset) / float(info.max - offset + 1)
    if data.dtype == np.bool_:
        raise InputError("boolean samples are not a sound")
    return np.asarray(data, dtype=np.float64)


def check_playable(waveform: np.ndarray, rate: float, what: str = "sound") -> None:
    """Refuse what a model cannot meaningfully hear: no samples, too short, non-finite."""
    n = waveform.shape[-1]
    if n == 0:
        raise InputError(f"{what} is empty (0 samples)")
    if n / rate < MIN_SOUND_SECONDS:
        raise InputError(
            f"{what} lasts {1000 * n / rate:.3g} ms ({n} samples at {rate:g} Hz); at least "
            f"{1000 * MIN_SOUND_SECONDS:g} ms is needed for a meaningful result"
        )
    if not np.all(np.isfinite(waveform)):
        raise InputError(f"{what} has NaN or Inf samples")


def resample(waveform: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy.signal.resample_poly, Kaiser window, beta 5)."""
    if rate_in == rate_out:
        return waveform
    ratio = Fraction(rate_out / rate_in).limit_denominator(10000)
    if abs(float(ratio) - rate_out / rate_in) > 1e-9 * rate_out / rate_in:
        raise ValueError(f"cannot resample {rate_in} Hz -> {rate_out} Hz with a rational ratio")
    return scipy.signal.resample_poly(waveform, ratio.numerator, ratio.denominator, axis=-1)


def centre_pad_or_trim(waveform: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad both ends equally (extra sample at the end), or keep the centre ``length`` samples."""
    n = waveform.shape[-1]
    if n < length:
        before = (length - n) // 2
        pad = [(0, 0)] * (waveform.ndim - 1) + [(before, length - n - before)]
        return np.pad(waveform, pad)
    start = (n - length) // 2
    return waveform[..., start : start + length]


def dbspl(waveform: np.ndarray) -> float:
    """Sound level in dB re 20 uPa of the mean-subtracted waveform (all channels together)."""
    x = waveform - waveform.mean(axis=-1, keepdims=True)
    rms = float(np.sqrt(np.mean(np.square(x))))
    return float("-inf") if rms == 0 else 20.0 * np.log10(rms / REFERENCE_PRESSURE_PA)


def set_dbspl(waveform: np.ndarray, level_db: float) -> np.ndarray:
    """Scale to ``level_db`` dB SPL (RMS over all channels jointly, so interaural level differences survive)."""
    low, high = DBSPL_RANGE
    if not (isinstance(level_db, (int, float)) and np.isfinite(level_db) and low <= level_db <= high):
        raise InputError(f"level {level_db!r} dB SPL is outside [{low:g}, {high:g}]")
    x = waveform - waveform.mean(axis=-1, keepdims=True)
    rms = float(np.sqrt(np.mean(np.square(x))))
    if rms == 0:
        raise InputError("cannot set the level of a silent sound")
    return x * (REFERENCE_PRESSURE_PA * 10 ** (level_db / 20.0) / rms)


def prepare_waveform(
    waveform: np.ndarray,
    rate: float,
    *,
    sample_rate: float,
    length: int,
    binaural: bool,
    level_db: float | None = None,
    diotic: bool = False,
) -> np.ndarray:
    """Make one sound fit a model: channels, rate, level, then centred length.

    ``waveform`` is (time,) or (channels, time). Returns (time,) for mono models and
    (2, time) for binaural ones, float32. A mono sound for a binaural model is refused
    unless ``diotic`` (the same signal to both ears).
    """
    x = pcm_to_float(waveform)
    if x.ndim == 1:
        x = x[np.newaxis]
    if x.ndim != 2:
        raise ValueError(f"expected a waveform of shape (time,) or (channels, time), got {x.shape}")
    channels = x.shape[0]
    if binaural:
        if channels == 1:
            if not diotic:
                raise ValueError("mono sound for a binaural (localization) model: pass diotic=True / --diotic to play it to both ears")
            x = np.repeat(x, 2, axis=0)
        elif channels != 2:
            raise ValueError(f"a binaural model needs 2 channels, the sound has {channels}")
    elif channels != 1:
        raise ValueError(f"a mono model needs 1 channel, the sound has {channels}: pick or mix one channel first")
    if not np.all(np.isfinite(x)):
        raise ValueError("sound has NaN or Inf samples")
    x = resample(x, rate, sample_rate)
    if level_db is not None:
        x = set_dbspl(x, level_db)
    x = centre_pad_or_trim(x, length)
    return (x if binaural else x[0]).astype(np.float32)
