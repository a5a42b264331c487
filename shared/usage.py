"""Tokens a call used, summed over its `response.done` events: one reading of the Realtime
usage object for the relay's core, its call record and the console.

The relay's call summary carries `as_dict()` (flat, one number per kind); the console reads
that back with `from_summary`, and sums live `response.done` usage with `add` meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec


class TokenUsage(msgspec.Struct, kw_only=True):
    """`input_text`/`input_audio` include their cached part, as the API reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_cached_tokens: int = 0
    input_cached_text_tokens: int = 0
    input_cached_audio_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0

    def add(self, usage: Mapping[str, Any] | None) -> None:
        """Add one Realtime usage object; missing or malformed parts count as 0."""
        if not usage:
            return
        self.input_tokens += _count(usage.get("input_tokens"))
        self.output_tokens += _count(usage.get("output_tokens"))
        self.total_tokens += _count(usage.get("total_tokens"))
        details_in = _mapping(usage.get("input_token_details"))
        self.input_text_tokens += _count(details_in.get("text_tokens"))
        self.input_audio_tokens += _count(details_in.get("audio_tokens"))
        self.input_cached_tokens += _count(details_in.get("cached_tokens"))
        cached = _mapping(details_in.get("cached_tokens_details"))
        self.input_cached_text_tokens += _count(cached.get("text_tokens"))
        self.input_cached_audio_tokens += _count(cached.get("audio_tokens"))
        details_out = _mapping(usage.get("output_token_details"))
        self.output_text_tokens += _count(details_out.get("text_tokens"))
        self.output_audio_tokens += _count(details_out.get("audio_tokens"))

    def as_dict(self) -> dict[str, int]:
        """The call summary's flat form."""
        return msgspec.structs.asdict(self)

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> TokenUsage:
        """Back from `as_dict()` (a call summary); unknown keys and bad numbers count as 0."""
        return cls(**{name: _count(summary.get(name)) for name in cls.__struct_fields__})


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
