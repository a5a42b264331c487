"""The tables, as typed SQLAlchemy 2 models. The schema itself is made by the migrations
(relay/store/migrations); tests/test_store_schema.py checks the two agree.

calls          one row per call: the columns the history list filters and sorts on, the
               turns' text for search, and the whole record as JSON
profiles       agent profiles by name (the profile's fields as JSON)
profile_numbers  a called number (E.164) -> the profile it uses
documents      small versioned JSON documents by key: the console's saved defaults, the
               default profile's name
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Double, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on PostgreSQL (compact, indexable later); JSON text on SQLite.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JsonDoc, str: String(), float: Double()}


class CallRow(Base):
    __tablename__ = "calls"

    call_sid: Mapped[str] = mapped_column(primary_key=True)
    # Unix seconds as doubles: exact round trips, so the list's cursor never skips a call.
    started_at: Mapped[float]
    answered_at: Mapped[float | None]
    ended_at: Mapped[float | None]
    stream_sid: Mapped[str]
    direction: Mapped[str]
    from_number: Mapped[str]
    to_number: Mapped[str]
    end_reason: Mapped[str | None]
    end_reason_text: Mapped[str] = mapped_column(Text)
    model: Mapped[str]
    voice: Mapped[str]
    profile: Mapped[str | None]
    turn_count: Mapped[int] = mapped_column(Integer)
    tool_call_count: Mapped[int] = mapped_column(Integer)
    total_tokens: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float | None]
    transcript: Mapped[str] = mapped_column(Text)  # searched with a case-insensitive LIKE
    record: Mapped[dict[str, Any]]

    __table_args__ = (
        Index("ix_calls_started_at_call_sid", "started_at", "call_sid"),
        Index("ix_calls_end_reason", "end_reason"),
        Index("ix_calls_profile", "profile"),
    )


class ProfileRow(Base):
    __tablename__ = "profiles"

    name: Mapped[str] = mapped_column(primary_key=True)
    config: Mapped[dict[str, Any]]
    updated_at: Mapped[float]


class NumberRow(Base):
    __tablename__ = "profile_numbers"

    number: Mapped[str] = mapped_column(primary_key=True)
    profile: Mapped[str] = mapped_column(
        ForeignKey("profiles.name", ondelete="CASCADE"), index=True
    )


class DocumentRow(Base):
    __tablename__ = "documents"

    key: Mapped[str] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[float]
