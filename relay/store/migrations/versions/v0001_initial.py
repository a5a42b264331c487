"""The first schema: calls, profiles, profile_numbers, documents.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_sid", sa.String(), primary_key=True),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("answered_at", sa.Double(), nullable=True),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.Column("stream_sid", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("from_number", sa.String(), nullable=False),
        sa.Column("to_number", sa.String(), nullable=False),
        sa.Column("end_reason", sa.String(), nullable=True),
        sa.Column("end_reason_text", sa.Text(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("voice", sa.String(), nullable=False),
        sa.Column("profile", sa.String(), nullable=True),
        sa.Column("turn_count", sa.Integer(), nullable=False),
        sa.Column("tool_call_count", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.Column("record", _json(), nullable=False),
    )
    op.create_index("ix_calls_started_at_call_sid", "calls", ["started_at", "call_sid"])
    op.create_index("ix_calls_end_reason", "calls", ["end_reason"])
    op.create_index("ix_calls_profile", "calls", ["profile"])
    op.create_table(
        "profiles",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("config", _json(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
    )
    op.create_table(
        "profile_numbers",
        sa.Column("number", sa.String(), primary_key=True),
        sa.Column(
            "profile",
            sa.String(),
            sa.ForeignKey("profiles.name", ondelete="CASCADE"),
            nullable=False,
        ),
    )
    op.create_index("ix_profile_numbers_profile", "profile_numbers", ["profile"])
    op.create_table(
        "documents",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("value", _json(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("documents")
    op.drop_table("profile_numbers")
    op.drop_table("profiles")
    op.drop_table("calls")
