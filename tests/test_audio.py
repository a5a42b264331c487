"""Audio arithmetic: bytes <-> ms per format, G.711 mu-law, levels, base64 sizes."""

from __future__ import annotations

import base64
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import audio


@pytest.mark.parametrize(
    ("fmt", "n_bytes", "ms"),
    [
        ("audio/pcmu", 160, 20.0),  # one Twilio frame
        ("audio/pcmu", 8000, 1000.0),
        ("audio/pcma", 160, 20.0),
        ("audio/pcma", 8, 1.0),
        ("audio/pcm", 960, 20.0),  # 24 kHz, 16-bit mono
        ("audio/pcm", 48000, 1000.0),
        ("audio/pcmu", 0, 0.0),
    ],
)
def test_bytes_and_ms_per_format(fmt: str, n_bytes: int, ms: float) -> None:
    assert audio.bytes_to_ms(n_bytes, fmt) == ms
    assert audio.ms_to_bytes(ms, fmt) == n_bytes


def test_default_format_is_mulaw() -> None:
    assert audio.bytes_to_ms(audio.FRAME_BYTES) == audio.FRAME_MS
    assert audio.ms_to_bytes(audio.FRAME_MS) == audio.FRAME_BYTES


def test_truncate_point_for_a_partial_frame() -> None:
    # The relay's barge-in arithmetic: for audio/pcmu, ms = bytes / 8.
    assert audio.bytes_to_ms(1234) == pytest.approx(154.25)


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(KeyError):
        audio.bytes_to_ms(160, "audio/opus")


@settings(deadline=None, derandomize=True, database=None)
@given(st.integers(0, 10**7), st.sampled_from(sorted(audio.BYTES_PER_MS)))
def test_ms_to_bytes_inverts_bytes_to_ms(n_bytes: int, fmt: str) -> None:
    assert audio.ms_to_bytes(audio.bytes_to_ms(n_bytes, fmt), fmt) == n_bytes


# --- mu-law ---------------------------------------------------------------------------


def test_mulaw_table_matches_g711() -> None:
    assert audio.MULAW_TO_LINEAR[0xFF] == 0  # positive zero: silence
    assert audio.MULAW_TO_LINEAR[0x7F] == 0  # negative zero
    assert audio.MULAW_TO_LINEAR[0x00] == -32124  # most negative
    assert audio.MULAW_TO_LINEAR[0x80] == 32124  # most positive
    assert len(set(audio.MULAW_TO_LINEAR)) == 255  # only the two zeros coincide


def test_mulaw_decode_is_monotonic_within_each_sign() -> None:
    positive = [audio.MULAW_TO_LINEAR[c] for c in range(0xFF, 0x7F, -1)]
    negative = [audio.MULAW_TO_LINEAR[c] for c in range(0x7F, -1, -1)]
    assert positive == sorted(positive)
    assert negative == sorted(negative, reverse=True)


def test_mulaw_round_trip_on_all_256_codes() -> None:
    codes = bytes(range(256))
    samples = audio.mulaw_decode(codes)
    assert len(samples) == 256
    again = audio.mulaw_encode(samples)
    # Every code survives decode -> encode, except negative zero which encodes as +0.
    expected = bytes(0xFF if c == 0x7F else c for c in codes)
    assert again == expected
    assert audio.mulaw_decode(again) == samples


@settings(deadline=None, derandomize=True, database=None)
@given(st.integers(-32768, 32767))
def test_mulaw_encode_is_close(sample: int) -> None:
    code = audio.mulaw_encode([sample])[0]
    decoded = audio.MULAW_TO_LINEAR[code]
    # G.711 quantisation error is at most half a step; steps grow to 1024 at full scale.
    clipped = max(-32635, min(32635, sample))
    assert abs(decoded - clipped) <= max(8, abs(clipped) // 16 + 8)


def test_encoding_clips_instead_of_wrapping() -> None:
    assert audio.mulaw_encode([32767, -32768]) == bytes([0x80, 0x00])


# --- levels ---------------------------------------------------------------------------


def test_rms_of_silence_is_zero() -> None:
    assert audio.rms_mulaw(audio.silence_mulaw(200)) == 0.0
    assert audio.rms_mulaw(b"") == 0.0
    assert len(audio.silence_mulaw(20)) == audio.FRAME_BYTES


def test_rms_of_a_tone_is_large() -> None:
    tone = audio.tone_mulaw(200, freq=440.0, amplitude=8000)
    assert len(tone) == 1600
    level = audio.rms_mulaw(tone)
    assert level == pytest.approx(8000 / math.sqrt(2), rel=0.05)
    assert level > 100 * max(1.0, audio.rms_mulaw(audio.silence_mulaw(200)))


def test_louder_tone_has_higher_rms() -> None:
    quiet = audio.rms_mulaw(audio.tone_mulaw(100, amplitude=1000))
    loud = audio.rms_mulaw(audio.tone_mulaw(100, amplitude=16000))
    assert loud > 10 * quiet


# --- base64 sizes ----------------------------------------------------------------------


@settings(deadline=None, derandomize=True, database=None, max_examples=300)
@given(st.binary(max_size=2000))
def test_b64_decoded_size_matches_decoding(data: bytes) -> None:
    b64 = base64.b64encode(data).decode()
    assert audio.b64_decoded_size(b64) == len(base64.b64decode(b64)) == len(data)


def test_b64_size_of_a_twilio_frame() -> None:
    frame = base64.b64encode(audio.silence_mulaw(20)).decode()
    assert len(frame) == 216
    assert audio.b64_decoded_size(frame) == 160
    assert audio.b64_decoded_size("") == 0
