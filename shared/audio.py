"""Audio arithmetic: bytes <-> milliseconds per format, and G.711 mu-law.

mu-law is implemented with lookup tables (ITU-T G.711): `audioop` is deprecated and
gone in Python 3.13, and the tables are exact and fast enough for the simulator.
The relay itself never transcodes: Twilio's payload goes to the model untouched.
"""

from __future__ import annotations

import binascii
from array import array

# Bytes per millisecond for each GA format.
BYTES_PER_MS: dict[str, float] = {
    "audio/pcmu": 8.0,  # 8 kHz, 1 byte per sample
    "audio/pcma": 8.0,
    "audio/pcm": 48.0,  # 24 kHz, 16-bit
}

FRAME_MS = 20
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
MULAW_SILENCE = 0xFF


def bytes_to_ms(n_bytes: int, fmt: str = "audio/pcmu") -> float:
    return n_bytes / BYTES_PER_MS[fmt]


def ms_to_bytes(ms: float, fmt: str = "audio/pcmu") -> int:
    return round(ms * BYTES_PER_MS[fmt])


def b64_len_to_bytes(b64_len: int, padding: int = 0) -> int:
    """Decoded size of a base64 string from its length, without decoding it."""
    return (b64_len // 4) * 3 - padding


def b64_decoded_size(b64: str) -> int:
    if not b64:
        return 0
    pad = 2 if b64.endswith("==") else 1 if b64.endswith("=") else 0
    return b64_len_to_bytes(len(b64), pad)


_BIAS = 0x84
_CLIP = 32635


def _decode_one(u: int) -> int:
    u = ~u & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    sample = ((mantissa << 3) + _BIAS) << exponent
    sample -= _BIAS
    return -sample if sign else sample


def _encode_one(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, _CLIP) + _BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not (sample & mask):
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


MULAW_TO_LINEAR: tuple[int, ...] = tuple(_decode_one(i) for i in range(256))
# Mean-square energy per mu-law byte: the simulator's VAD sums these.
MULAW_ENERGY: tuple[int, ...] = tuple(v * v for v in MULAW_TO_LINEAR)


def mulaw_decode(data: bytes) -> array[int]:
    """mu-law bytes -> 16-bit signed linear samples."""
    return array("h", (MULAW_TO_LINEAR[b] for b in data))


def mulaw_encode(samples: array[int] | list[int]) -> bytes:
    """16-bit signed linear samples -> mu-law bytes."""
    return bytes(_encode_one(int(s)) for s in samples)


def rms_mulaw(data: bytes) -> float:
    """Root-mean-square level (0..32767) of a mu-law chunk."""
    if not data:
        return 0.0
    total = sum(map(MULAW_ENERGY.__getitem__, data))
    return float((total / len(data)) ** 0.5)


def tone_mulaw(ms: int, freq: float = 440.0, amplitude: int = 8000, rate: int = 8000) -> bytes:
    """A sine tone as mu-law: the simulated caller's 'speech'."""
    import math

    n = rate * ms // 1000
    step = 2 * math.pi * freq / rate
    return mulaw_encode([int(amplitude * math.sin(i * step)) for i in range(n)])


def silence_mulaw(ms: int) -> bytes:
    return bytes([MULAW_SILENCE]) * (8 * ms)


# Samples louder than this (about -30 dBFS) count as voice; phone-line hiss and comfort
# noise stay well below it.
LOUD_SAMPLE = 1000
_LOUD_TABLE = bytes(1 if abs(v) > LOUD_SAMPLE else 0 for v in MULAW_TO_LINEAR)
_LOUD_FRACTION = 0.05  # of the samples in a frame


def is_loud_b64(payload: str) -> bool:
    """Whether a base64 mu-law frame holds voice-level audio (a few microseconds).

    The relay checks the caller's frames while they speak, to find where their speech
    ended (for the latency the caller feels); it never changes what is sent."""
    try:
        data = binascii.a2b_base64(payload)
    except (binascii.Error, ValueError):
        return False
    return data.translate(_LOUD_TABLE).count(1) > len(data) * _LOUD_FRACTION


# 16-bit little-endian PCM: a sample is louder than 1024 (about -30 dBFS, like LOUD_SAMPLE)
# exactly when its high byte is not 0x00-0x03 or 0xFC-0xFF, so only the high bytes are
# looked at, in C, with no per-sample Python.
_LOUD_HIGH_BYTE = bytes(0 if b < 4 or b >= 0xFC else 1 for b in range(256))


def is_loud_pcm16_b64(payload: str) -> bool:
    """`is_loud_b64` for base64 PCM16 (audio/pcm, 24 kHz): a browser's wideband calls."""
    try:
        data = binascii.a2b_base64(payload)
    except (binascii.Error, ValueError):
        return False
    high = data[1::2]
    return high.translate(_LOUD_HIGH_BYTE).count(1) > len(high) * _LOUD_FRACTION
