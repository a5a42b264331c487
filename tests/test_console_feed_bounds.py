"""What one browser's feed keeps is bounded, and a full queue never kills the feed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from console.calls import CallBook
from console.feed import put_dropping_oldest
from console.state import feed as feed_state


def started(book: CallBook, sid: str, at: float) -> None:
    book.apply(
        {"type": "call.started", "call_sid": sid, "call": {"call_sid": sid, "started_at": at}}
    )


def ended(book: CallBook, sid: str) -> None:
    book.apply({"type": "call.ended", "call_sid": sid, "summary": {"end_reason": "caller_hung_up"}})


def test_a_book_keeps_live_calls_and_the_newest_ended_ones() -> None:
    book = CallBook(max_ended=3)
    for i in range(6):
        started(book, f"CA{i}", 1000.0 + i)
        if i != 2:
            ended(book, f"CA{i}")
    book.prune(keep="CA0")  # someone is reading CA0: it stays
    assert set(book.calls) == {"CA0", "CA2", "CA3", "CA4", "CA5"}
    book.prune()
    assert set(book.calls) == {"CA2", "CA3", "CA4", "CA5"}
    assert book.calls["CA2"].live


def test_a_full_queue_makes_room_for_the_newest() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=3)
    for i in range(3):
        assert put_dropping_oldest(queue, i) == 0
    assert put_dropping_oldest(queue, 3) == 1
    assert [queue.get_nowait() for _ in range(3)] == [1, 2, 3]


def test_the_inbox_never_raises_and_says_what_it_dropped(caplog: pytest.LogCaptureFixture) -> None:
    inbox = feed_state.Inbox("token-abcdefgh-123", maxsize=3)
    with caplog.at_level(logging.WARNING, logger="console.feed"):
        for i in range(5):
            inbox.event({"type": "model", "n": i})  # the newest are dropped: the loop is stuck
        inbox.status(False, "the relay is restarting", False)  # but a status always gets in
        inbox.status(True, "", True)
    events = [inbox.queue.get_nowait() for _ in range(3)]
    assert events[0] == {"type": "model", "n": 2}
    assert [e.get("online") for e in events[1:]] == [False, True]
    assert inbox.dropped == 4
    assert "queue is full" in caplog.text and "token-ab" in caplog.text
    assert "token-abcdefgh-123" not in caplog.text


def test_audio_progress_backs_off_before_the_queue_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_state, "PROGRESS_MAX", 2)
    inbox = feed_state.Inbox("t", maxsize=10)
    for _ in range(5):
        inbox.event({"type": "audio.progress"})
    inbox.event({"type": "call.ended"})
    assert inbox.queue.qsize() == 3 and inbox.dropped == 0


def test_a_stopped_feed_forgets_its_browser() -> None:
    token = "browser-gone"
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    feed_state.BOOKS[token] = CallBook()
    feed_state.QUEUES[token] = queue  # type: ignore[assignment]
    try:
        feed_state.forget(token, asyncio.Queue())  # another loop's queue: not this one's
        assert token not in feed_state.BOOKS and token in feed_state.QUEUES
        feed_state.forget(token, queue)  # type: ignore[arg-type]
        assert token not in feed_state.QUEUES
    finally:
        feed_state.BOOKS.pop(token, None)
        feed_state.QUEUES.pop(token, None)
