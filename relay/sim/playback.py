"""Twilio's playback buffer as the simulated caller hears it: the ground truth.

Outbound media is queued and played at 8 bytes/ms from the moment it arrives (or when
what is queued before it ends). Each mark is due when playback passes the point where
it was queued. Audio is attributed to an assistant item by the mark that follows it
(the relay names marks `{item_id}:{cumulative_ms}`). Times are seconds on a monotonic
clock passed in by the caller, so this is plain arithmetic and testable without sockets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

BYTES_PER_S = 8000.0  # mu-law 8 kHz
UNMARKED = "?"  # audio never followed by a mark


def item_of_mark(name: str) -> str:
    """The relay's mark name is `{item_id}:{ms}`; the item id is everything before the last ':'."""
    head, sep, _ = name.rpartition(":")
    return head if sep else name


@dataclass(slots=True)
class Segment:
    start: float
    end: float
    item_id: str = ""  # "" until a mark attributes it

    def played_s(self, now: float) -> float:
        return max(0.0, min(self.end, now) - self.start)


@dataclass
class Playback:
    end: float = 0.0  # when everything queued so far will have played
    segments: list[Segment] = field(default_factory=list)
    pending: deque[tuple[float, str]] = field(default_factory=deque)  # (due time, mark name)
    last_item: str = ""  # the item of the last mark seen
    last_media_at: float = -1.0
    queued_s: float = 0.0  # all audio accepted into the buffer, minus what clear dropped
    _unmarked: list[Segment] = field(default_factory=list)

    def buffered_s(self, now: float) -> float:
        return max(0.0, self.end - now)

    def add_media(self, now: float, n_bytes: int) -> Segment:
        start = max(now, self.end)
        seg = Segment(start, start + n_bytes / BYTES_PER_S)
        self.end = seg.end
        self.queued_s += seg.end - seg.start
        self.last_media_at = now
        self.segments.append(seg)
        self._unmarked.append(seg)
        return seg

    def add_mark(self, now: float, name: str) -> bool:
        """Queue a mark; True if it is due at once (nothing buffered) and must be echoed now."""
        item = item_of_mark(name)
        self._attribute(item)
        self.last_item = item
        if self.end <= now:
            return True
        self.pending.append((self.end, name))
        return False

    def due(self, now: float) -> list[str]:
        """Marks whose audio has played by `now`, in order."""
        out: list[str] = []
        while self.pending and self.pending[0][0] <= now:
            out.append(self.pending.popleft()[1])
        return out

    def next_due(self) -> float | None:
        return self.pending[0][0] if self.pending else None

    def clear(self, now: float) -> tuple[list[str], str, float, bool]:
        """Drop what is unplayed; returns (flushed marks, item playing, its played s, playing?)."""
        self._attribute(self.last_item or UNMARKED)
        playing = self.end > now
        current = ""
        for seg in self.segments:
            if seg.start <= now:
                current = seg.item_id
            if seg.end > now:
                seg.end = max(seg.start, now)
        self.queued_s -= self.buffered_s(now)
        self.end = min(self.end, now)
        flushed = [name for _, name in self.pending]
        self.pending.clear()
        return flushed, current, self.item_played_s(current, now) if current else 0.0, playing

    def finish(self) -> None:
        """At hang-up: audio never followed by a mark goes to the last item seen."""
        self._attribute(self.last_item or UNMARKED)

    def item_played_s(self, item_id: str, now: float) -> float:
        return sum(s.played_s(now) for s in self.segments if s.item_id == item_id)

    def played_s(self, now: float) -> float:
        # Everything unplayed is queued contiguously up to `end`, so no per-segment sum.
        return self.queued_s - self.buffered_s(now)

    def heard_ms(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for seg in self.segments:
            key = seg.item_id or UNMARKED
            out[key] = out.get(key, 0.0) + 1000 * seg.played_s(now)
        return out

    def _attribute(self, item_id: str) -> None:
        for seg in self._unmarked:
            seg.item_id = item_id
        self._unmarked.clear()
