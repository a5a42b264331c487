"""The store's settings: DATABASE_URL in every spelling people paste, errors that name the
variable (and never echo a password), the price table and its estimate, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.store import Usage, from_env
from relay.store.cost import DEFAULT_PRICES, PriceTable, parse_prices
from relay.store.redact import number_query, redact_number
from shared.envparse import SettingsError


def url_of(env: dict[str, str]) -> str:
    return from_env(env).database_url.get()


def test_the_default_is_a_sqlite_file_in_the_data_directory() -> None:
    settings = from_env({})
    assert url_of({}) == "sqlite+aiosqlite:///data/relay.db"
    assert settings.backend == "sqlite" and settings.data_dir == Path("data")
    assert settings.history_days == 90 and not settings.redact_numbers
    assert (
        url_of({"RELAY_DATA_DIR": "/var/lib/relay"})
        == "sqlite+aiosqlite:////var/lib/relay/relay.db"
    )
    assert url_of({"DATABASE_URL": "sqlite:///x/history.db"}) == "sqlite+aiosqlite:///x/history.db"


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://relay:s3cret@db.internal:5432/relay",
        "postgres://relay:s3cret@db.internal:5432/relay",
        "postgresql+asyncpg://relay:s3cret@db.internal:5432/relay",
    ],
)
def test_postgres_urls_in_every_spelling_use_asyncpg(raw: str) -> None:
    settings = from_env({"DATABASE_URL": raw})
    assert settings.database_url.get() == "postgresql+asyncpg://relay:s3cret@db.internal:5432/relay"
    assert settings.backend == "postgresql"
    assert "s3cret" not in settings.display_url and "s3cret" not in repr(settings)


def test_sslmode_becomes_asyncpgs_ssl() -> None:
    url = url_of({"DATABASE_URL": "postgres://u:p@h/db?sslmode=require"})
    assert url == "postgresql+asyncpg://u:p@h/db?ssl=require"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("mysql://u:hunter2@h/db", "unsupported database"),
        ("postgresql+psycopg2://u:hunter2@h/db", "asyncpg"),
        ("postgresql://u:hunter2@h", "name the database"),
        ("sqlite://", "file"),
        ("sqlite:///:memory:", "file"),
        ("not a url hunter2", "not a database URL"),
    ],
)
def test_a_bad_database_url_names_the_variable_and_hides_the_password(raw: str, words: str) -> None:
    with pytest.raises(SettingsError) as info:
        from_env({"DATABASE_URL": raw})
    assert info.value.name == "DATABASE_URL"
    assert words in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"RELAY_HISTORY_DAYS": "-1"}, "RELAY_HISTORY_DAYS"),
        ({"RELAY_HISTORY_DAYS": "ninety"}, "RELAY_HISTORY_DAYS"),
        ({"RELAY_REDACT_NUMBERS": "maybe"}, "RELAY_REDACT_NUMBERS"),
        ({"RELAY_PRICES_JSON": "{oops"}, "RELAY_PRICES_JSON"),
        ({"RELAY_PRICES_JSON": "[1]"}, "RELAY_PRICES_JSON"),
        ({"RELAY_PRICES_JSON": '{"gpt-realtime": {"audio_inn": 1}}'}, "RELAY_PRICES_JSON"),
        ({"RELAY_PRICES_JSON": '{"gpt-realtime": {"audio_in": -1}}'}, "RELAY_PRICES_JSON"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as info:
        from_env(env)
    assert info.value.name == name


def test_values_are_read() -> None:
    settings = from_env(
        {"RELAY_HISTORY_DAYS": "0", "RELAY_REDACT_NUMBERS": "yes", "RELAY_DATA_DIR": "/tmp/x"}
    )
    assert settings.history_days == 0 and settings.redact_numbers
    assert settings.data_dir == Path("/tmp/x")


def test_the_cost_estimate_counts_every_kind_of_token() -> None:
    table = PriceTable()
    usage = Usage(
        input_text=1_000_000,
        input_cached_text=400_000,
        input_audio=1_000_000,
        input_cached_audio=250_000,
        output_text=1_000_000,
        output_audio=1_000_000,
    )
    # gpt-realtime per 1M: text 4 / cached 0.4 / out 16; audio 32 / cached 0.4 / out 64.
    expected = 0.6 * 4 + 0.4 * 0.4 + 16 + 0.75 * 32 + 0.25 * 0.4 + 64
    assert table.estimate("gpt-realtime", usage) == pytest.approx(expected)
    assert table.estimate("gpt-realtime-2025-08-28", usage) == pytest.approx(expected)
    mini = table.estimate("gpt-realtime-mini-2025-10-06", usage)  # not priced as gpt-realtime
    assert mini is not None and mini < expected / 3
    assert table.estimate("some-other-model", usage) is None
    assert table.estimate("gpt-realtime", Usage()) == 0.0


def test_prices_json_overrides_and_adds_models() -> None:
    table = parse_prices({"gpt-realtime": {"audio_out": 50}, "my-model": {"text_in": 1}})
    base = table.for_model("gpt-realtime")
    assert base is not None and base.audio_out == 50
    assert base.audio_in == DEFAULT_PRICES["gpt-realtime"].audio_in  # the rest kept
    assert table.estimate("my-model", Usage(input_text=2_000_000)) == 2.0
    prices = from_env({"RELAY_PRICES_JSON": '{"my-model": {"audio_in": 3}}'}).prices
    assert prices.estimate("my-model", Usage(input_audio=1_000_000)) == 3.0


def test_redaction_keeps_the_last_four_digits_of_numbers_only() -> None:
    assert redact_number("+15551234567") == "***4567"
    assert redact_number("sip:+15551234567@pbx.example.com") == "***4567"
    assert redact_number("client:alice") == "client:alice"
    assert redact_number("") == ""
    assert number_query("+1 (555) 123-4567", redacted=False) == "15551234567"
    assert number_query("+1 (555) 123-4567", redacted=True) == "4567"
    assert number_query("alice", redacted=True) == "alice"
