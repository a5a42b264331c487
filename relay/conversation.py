"""The conversation so far, in the model's own order: what a fresh session is re-seeded with.

Entries are created when the model announces an item (`conversation.item.added`), at the
place its `previous_item_id` names, so a transcript that arrives late (caller transcription
usually does) fills in an entry that is already in the right place. Items the relay creates
itself (a keypress, a tool's output, a re-seeded turn) carry the relay's own id, so the
model's echo of them is recognised instead of duplicated; their place is the model's.

An answer the caller interrupted is cut to roughly what was heard, whenever its text
arrives, so a re-seeded session does not believe the caller heard the rest.
No I/O and no clock here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import realtime as rt

MAX_ENTRIES = 500  # kept per call (an hour of turns); an hour-long call stays bounded
RESEED_ENTRIES = 40  # sent to a fresh session: enough context, bounded tokens
_REPLAYED = ("message", "function_call", "function_call_output")


@dataclass(slots=True)
class Entry:
    item_id: str
    kind: str  # message | function_call | function_call_output | other item types
    role: str = ""
    text: str = ""
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""
    heard_ms: float | None = None  # set when the caller interrupted it
    audio_ms: float = 0.0  # assistant audio received for it, at the interruption
    session: int = 0  # the model socket generation that holds it; 0 = none yet
    at: float = 0.0  # when it entered the conversation, in the caller's clock (`now`)

    def cut(self) -> None:
        """Keep roughly the part of an interrupted answer the caller heard."""
        if self.heard_ms is None or not self.text or self.audio_ms <= 0:
            return
        keep = max(0, int(len(self.text) * min(1.0, self.heard_ms / self.audio_ms)))
        if keep < len(self.text):
            self.text = self.text[:keep].rstrip() + "..."
        self.audio_ms = 0.0  # cut once


class Conversation:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.entries: list[Entry] = []
        self.by_id: dict[str, Entry] = {}
        self.max_entries = max_entries
        self._local = 0

    def __len__(self) -> int:
        return len(self.entries)

    def new_id(self, prefix: str) -> str:
        """An item id of the relay's own (the API accepts client ids; 32 chars at most)."""
        self._local += 1
        return f"{prefix}_{self._local}"

    # --- what the model tells us --------------------------------------------------------

    def added(
        self, item: rt.Item, previous_item_id: Any, session: int, at: float = 0.0
    ) -> Entry | None:
        """The model put an item in its conversation after `previous_item_id` (at `at`)."""
        item_id = item.id if isinstance(item.id, str) else ""
        if not item_id:
            return None
        entry = self.by_id.get(item_id)
        if entry is None:
            entry = _entry_from(item)
            entry.at = at
            self.by_id[item_id] = entry
            self.entries.append(entry)
        else:
            _fill(entry, item)
        entry.session = session
        previous = previous_item_id if isinstance(previous_item_id, str) else None
        self._place_after(entry, previous)
        self._bound()
        return entry

    def done(self, item: rt.Item) -> None:
        """The item is complete: take its final transcript or arguments if we lack them."""
        entry = self.by_id.get(item.id) if isinstance(item.id, str) else None
        if entry is not None:
            _fill(entry, item)

    def set_text(self, item_id: str, text: str) -> None:
        entry = self.by_id.get(item_id)
        if entry is None or not text:
            return
        entry.text = text
        entry.cut()

    def set_call(self, item_id: str, call_id: str, name: str, arguments: str) -> None:
        entry = self.by_id.get(item_id)
        if entry is not None:
            entry.call_id, entry.name, entry.arguments = call_id, name, arguments

    def interrupted(self, item_id: str, heard_ms: float, audio_ms: float) -> None:
        entry = self.by_id.get(item_id)
        if entry is None:
            return
        entry.heard_ms, entry.audio_ms = heard_ms, audio_ms
        entry.cut()

    def was_interrupted(self, item_id: str) -> bool:
        entry = self.by_id.get(item_id)
        return entry is not None and entry.heard_ms is not None

    # --- what the relay adds ----------------------------------------------------------------

    def add_local(self, entry: Entry) -> Entry:
        """An item the relay creates (keypress, tool output); sent when a session is open."""
        self.by_id[entry.item_id] = entry
        self.entries.append(entry)
        self._bound()
        return entry

    def has_call(self, call_id: str) -> bool:
        return any(e.kind == "function_call" and e.call_id == call_id for e in self.entries)

    def unsent(self, session: int, reseed: bool) -> list[Entry]:
        """Entries this session lacks, in order: the recent conversation after a reconnect
        (`reseed`), otherwise only what the relay added while no session was open."""
        if not reseed:
            return [e for e in self.entries if e.session == 0]
        replay = [e for e in self.entries if e.kind in _REPLAYED and _has_content(e)]
        replay = replay[-RESEED_ENTRIES:]
        calls = {e.call_id for e in replay if e.kind == "function_call"}
        # An output whose call was cut off would be refused ("no such call"): leave it out.
        return [e for e in replay if e.kind != "function_call_output" or e.call_id in calls]

    @staticmethod
    def item_for(entry: Entry) -> rt.Item:
        """The item that re-creates an entry in a fresh session, under the same id."""
        if entry.kind == "function_call":
            return rt.Item(
                type="function_call",
                id=entry.item_id,
                call_id=entry.call_id,
                name=entry.name,
                arguments=entry.arguments,
            )
        if entry.kind == "function_call_output":
            return rt.Item(
                type="function_call_output",
                id=entry.item_id,
                call_id=entry.call_id,
                output=entry.output,
            )
        part = "output_text" if entry.role == "assistant" else "input_text"
        return rt.Item(
            type="message",
            id=entry.item_id,
            role=entry.role or "user",
            content=[rt.ContentPart(type=part, text=entry.text)],
        )

    def texts(self) -> list[tuple[str, str]]:
        """(role, text) of the message entries, in order; for tests and summaries."""
        return [(e.role, e.text) for e in self.entries if e.kind == "message" and e.text]

    # --- internals ------------------------------------------------------------------------

    def _place_after(self, entry: Entry, previous: str | None) -> None:
        """Move `entry` right after `previous`; with no (known) previous it stays put: the
        model's first item, or one we placed ourselves (replayed in order after a reconnect)."""
        prev = self.by_id.get(previous) if previous else None
        if prev is None or prev is entry:
            return
        self.entries.remove(entry)
        self.entries.insert(self.entries.index(prev) + 1, entry)

    def _bound(self) -> None:
        while len(self.entries) > self.max_entries:
            old = self.entries.pop(0)
            self.by_id.pop(old.item_id, None)


def _has_content(entry: Entry) -> bool:
    if entry.kind == "message":
        return bool(entry.text)
    if entry.kind == "function_call":
        return bool(entry.call_id and entry.name)
    return bool(entry.call_id)


def _entry_from(item: rt.Item) -> Entry:
    entry = Entry(item_id=str(item.id), kind=item.type)
    _fill(entry, item)
    return entry


def _fill(entry: Entry, item: rt.Item) -> None:
    if isinstance(item.role, str):
        entry.role = item.role
    if isinstance(item.call_id, str) and item.call_id:
        entry.call_id = item.call_id
    if isinstance(item.name, str) and item.name:
        entry.name = item.name
    if isinstance(item.arguments, str) and item.arguments:
        entry.arguments = item.arguments
    if isinstance(item.output, str):
        entry.output = item.output
    if not entry.text and isinstance(item.content, list):
        for part in item.content:
            text = part.transcript if isinstance(part.transcript, str) else part.text
            if isinstance(text, str) and text:
                entry.text = text
                entry.cut()
                break
