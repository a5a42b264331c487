"""What the caller has actually heard, from Twilio's mark echoes.

After each chunk of assistant audio the relay sends a mark named `{item_id}:{end_ms}`.
Twilio echoes a mark when the audio queued before it has played (immediately when
nothing is queued), and echoes every pending mark on `clear` -- those echoes are *not*
playback and are ignored. Between echoes playback advances in real time, so the
position is interpolated from the last anchor and clamped to the audio sent.
Times are seconds from any monotonic clock; nothing here reads a clock.

Echoes arrive one network hop after the audio played, and a `clear` takes one hop to
reach Twilio, so a position anchored on an echo is advanced by the round-trip time,
measured from chunks sent into an empty buffer (echo time - send time - duration).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_ITEMS = 32
MAX_FLUSHED = 512


@dataclass(slots=True)
class PendingMark:
    name: str
    item_id: str
    end_ms: float
    sent_at: float = 0.0
    rtt_probe_ms: float | None = None  # set when this chunk started an empty buffer


@dataclass(slots=True)
class ItemAudio:
    sent_ms: float = 0.0  # sent to Twilio
    played_ms: float = 0.0  # confirmed by mark echoes


@dataclass
class PlaybackTracker:
    items: dict[str, ItemAudio] = field(default_factory=dict)
    pending: deque[PendingMark] = field(default_factory=deque)
    flushed: set[str] = field(default_factory=set)
    # Interpolation anchor: at time `anchor_t`, item `anchor_item` was at `anchor_ms`.
    anchor_t: float = 0.0
    anchor_item: str = ""
    anchor_ms: float = 0.0
    anchor_lead_ms: float = 0.0  # the round trip to add to an echo-based anchor
    rtt_ms: float = 0.0  # smoothed Twilio round-trip time

    @property
    def playing(self) -> bool:
        """True while Twilio still holds assistant audio that has not been played."""
        return bool(self.pending)

    def sent(self, item_id: str, ms: float, now: float) -> PendingMark:
        """Record a chunk sent to Twilio; returns the mark to send right after it."""
        audio = self.items.get(item_id)
        if audio is None:
            self._prune()
            audio = self.items[item_id] = ItemAudio()
        probe = None
        if not self.pending:
            # Twilio's buffer was empty: this chunk starts playing as it arrives.
            self.anchor_t, self.anchor_item, self.anchor_ms = now, item_id, audio.sent_ms
            self.anchor_lead_ms = 0.0
            probe = ms
        audio.sent_ms += ms
        end = audio.sent_ms
        mark = PendingMark(f"{item_id}:{end:.0f}", item_id, end, now, probe)
        self.pending.append(mark)
        return mark

    def echoed(self, name: str, now: float) -> PendingMark | None:
        """A mark came back. Returns it if it confirms playback, None if stale or unknown."""
        if name in self.flushed:
            self.flushed.discard(name)
            return None
        pending = self.pending
        # Echoes come in order: the first pending mark, almost always.
        if not pending or (pending[0].name != name and all(m.name != name for m in pending)):
            return None
        while self.pending:
            mark = self.pending.popleft()
            audio = self.items.get(mark.item_id)
            if audio is not None:
                audio.played_ms = max(audio.played_ms, mark.end_ms)
            if mark.name == name:
                if mark.rtt_probe_ms is not None:
                    sample = (now - mark.sent_at) * 1000.0 - mark.rtt_probe_ms
                    if 0.0 <= sample < 2000.0:
                        self.rtt_ms = (
                            sample if not self.rtt_ms else 0.8 * self.rtt_ms + 0.2 * sample
                        )
                self.anchor_lead_ms = self.rtt_ms
                nxt = self.pending[0] if self.pending else None
                if nxt is not None and nxt.item_id != mark.item_id:
                    self.anchor_t, self.anchor_item, self.anchor_ms = now, nxt.item_id, 0.0
                else:
                    self.anchor_t, self.anchor_item, self.anchor_ms = now, mark.item_id, mark.end_ms
                return mark
        return None

    def position(self, now: float) -> tuple[str, float] | None:
        """(item_id, ms heard so far) of the item playing now, or None when idle."""
        if not self.pending:
            return None
        item = self.anchor_item
        limit = max((m.end_ms for m in self.pending if m.item_id == item), default=None)
        if limit is None:
            # The anchor item finished; the next pending item has not been confirmed yet.
            item = self.pending[0].item_id
            return item, self.items[item].played_ms
        elapsed_ms = max(0.0, (now - self.anchor_t) * 1000.0) + self.anchor_lead_ms
        return item, min(self.anchor_ms + elapsed_ms, limit)

    def clear(self) -> list[PendingMark]:
        """Twilio's buffer is being emptied: pending marks will echo but were not heard."""
        dropped = list(self.pending)
        self.flushed.update(m.name for m in dropped)
        self.pending.clear()
        return dropped

    def forget(self, item_id: str) -> None:
        self.items.pop(item_id, None)

    def _prune(self) -> None:
        """Keep an hour-long call's books small: old items are long played out."""
        if len(self.items) >= MAX_ITEMS:
            live = {m.item_id for m in self.pending}
            for item_id in list(self.items)[: len(self.items) - MAX_ITEMS // 2]:
                if item_id not in live:
                    del self.items[item_id]
        if len(self.flushed) > MAX_FLUSHED:
            self.flushed.clear()  # echoes Twilio never sent (a lost clear): forget them
