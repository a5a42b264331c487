"""An estimated cost of a call from its token usage, with a configurable price table.

Prices are USD per 1M tokens. The defaults are OpenAI's published list prices for the
Realtime models (openai.com/api/pricing, as of late 2025). They are estimates: the bill is
what OpenAI says, prices change, and caller transcription (e.g. whisper-1) is billed apart
and not counted here. Override or extend them with RELAY_PRICES_JSON, e.g.

    {"gpt-realtime": {"audio_in": 32, "audio_out": 64}, "my-model": {"text_in": 1}}

A model's entry is merged over the default for that name (or over zeros for a new name); a
model name matches the longest entry it starts with (gpt-realtime-2025-08-28 -> gpt-realtime).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from shared.envparse import SettingsError

from .records import Usage


class Prices(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """USD per 1M tokens, by kind."""

    text_in: float = 0.0
    text_cached_in: float = 0.0
    text_out: float = 0.0
    audio_in: float = 0.0
    audio_cached_in: float = 0.0
    audio_out: float = 0.0


DEFAULT_PRICES: Mapping[str, Prices] = {
    "gpt-realtime": Prices(
        text_in=4.0, text_cached_in=0.4, text_out=16.0,
        audio_in=32.0, audio_cached_in=0.4, audio_out=64.0,
    ),
    "gpt-realtime-mini": Prices(
        text_in=0.6, text_cached_in=0.06, text_out=2.4,
        audio_in=10.0, audio_cached_in=0.3, audio_out=20.0,
    ),
    "gpt-4o-realtime-preview": Prices(
        text_in=5.0, text_cached_in=2.5, text_out=20.0,
        audio_in=40.0, audio_cached_in=2.5, audio_out=80.0,
    ),
    "gpt-4o-mini-realtime-preview": Prices(
        text_in=0.6, text_cached_in=0.3, text_out=2.4,
        audio_in=10.0, audio_cached_in=0.3, audio_out=20.0,
    ),
}  # fmt: skip


class PriceTable:
    def __init__(self, prices: Mapping[str, Prices] = DEFAULT_PRICES) -> None:
        self.prices = dict(prices)
        # Longest first, so gpt-realtime-mini-... is not priced as gpt-realtime.
        self._names = sorted(self.prices, key=len, reverse=True)

    def for_model(self, model: str) -> Prices | None:
        if model in self.prices:
            return self.prices[model]
        return next((self.prices[n] for n in self._names if model.startswith(n)), None)

    def estimate(self, model: str, usage: Usage) -> float | None:
        """USD, rounded to a millionth of a dollar; None for a model with no price."""
        p = self.for_model(model)
        if p is None:
            return None
        text_cached = min(usage.input_cached_text, usage.input_text)
        audio_cached = min(usage.input_cached_audio, usage.input_audio)
        micro = (
            (usage.input_text - text_cached) * p.text_in
            + text_cached * p.text_cached_in
            + usage.output_text * p.text_out
            + (usage.input_audio - audio_cached) * p.audio_in
            + audio_cached * p.audio_cached_in
            + usage.output_audio * p.audio_out
        )
        return round(micro / 1_000_000, 6)


def parse_prices(raw: Any, name: str = "RELAY_PRICES_JSON") -> PriceTable:
    """The default table with `raw` (decoded JSON, or None) merged over it."""
    if raw is None:
        return PriceTable()
    if not isinstance(raw, dict):
        raise SettingsError(name, "expected a JSON object of model -> {kind: USD per 1M tokens}")
    table = dict(DEFAULT_PRICES)
    for model, entry in raw.items():
        if not isinstance(entry, dict):
            raise SettingsError(name, f'{model}: expected an object such as {{"audio_in": 32}}')
        base = msgspec.to_builtins(table.get(model, Prices()))
        try:
            prices = msgspec.convert({**base, **entry}, Prices)
        except msgspec.ValidationError as exc:
            raise SettingsError(name, f"{model}: {exc}") from None
        if any(v < 0 for v in msgspec.structs.astuple(prices)):
            raise SettingsError(name, f"{model}: a price cannot be negative")
        table[model] = prices
    return PriceTable(table)
