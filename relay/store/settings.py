"""The store's settings from the environment, typed and checked at start-up.

    DATABASE_URL                   empty = SQLite file RELAY_DATA_DIR/relay.db; or postgresql://
    RELAY_DATA_DIR                 default ./data
    RELAY_HISTORY_DAYS             delete calls older than this; 0 = keep forever; default 90
    RELAY_REDACT_NUMBERS           keep only the last four digits of phone numbers
    RELAY_POSTCALL_WEBHOOK_URL     POST each ended call's record here (signed)
    RELAY_POSTCALL_WEBHOOK_SECRET  the signing secret (whsec_<base64>, or any string)
    RELAY_PRICES_JSON              price table overrides for the cost estimate

A bad value raises SettingsError naming the variable, as relay/settings.py does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from shared import envparse as ep
from shared.envparse import SettingsError
from shared.secret import Secret

from .cost import PriceTable, parse_prices
from .db import database_url, display_url
from .webhook import signing_key


@dataclass(frozen=True)
class StoreSettings:
    # The SQLAlchemy URL with its async driver (may hold a password: see display_url).
    database_url: Secret = field(
        default_factory=lambda: Secret("sqlite+aiosqlite:///data/relay.db")
    )
    data_dir: Path = Path("data")
    history_days: int = 90
    redact_numbers: bool = False
    webhook_url: str = ""
    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    prices: PriceTable = field(default_factory=PriceTable)
    # Tunables with no variable: the defaults suit a phone line; tests shorten them.
    queue_max: int = 1000  # call records waiting to be written; beyond, the oldest is dropped
    batch_size: int = 100
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    retention_interval_s: float = 3600.0
    resolve_timeout_s: float = 2.0  # a profile look-up on /twiml never waits longer
    webhook_attempts: int = 8
    webhook_backoff_s: float = 1.0
    webhook_timeout_s: float = 10.0

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.database_url.get().split("+", 1)[0].split(":", 1)[0]

    @property
    def database_password(self) -> Secret:
        """The database password, if the URL holds one (for the log redaction)."""
        return Secret(make_url(self.database_url.get()).password or "")

    @property
    def display_url(self) -> str:
        """The database URL with any password hidden, for logs."""
        return display_url(self.database_url.get())


def from_env(env: Mapping[str, str]) -> StoreSettings:
    """Build settings; a bad value raises SettingsError naming the variable."""
    data_dir = Path(ep.text(env, "RELAY_DATA_DIR", "data"))
    url = database_url(ep.text(env, "DATABASE_URL"), data_dir)
    webhook_url = ep.url(env, "RELAY_POSTCALL_WEBHOOK_URL")
    secret = ep.text(env, "RELAY_POSTCALL_WEBHOOK_SECRET")
    if webhook_url and not secret:
        raise SettingsError(
            "RELAY_POSTCALL_WEBHOOK_SECRET",
            "needed with RELAY_POSTCALL_WEBHOOK_URL: an unsigned webhook can be forged",
        )
    if secret:
        try:
            signing_key(secret)
        except ValueError as exc:
            raise SettingsError("RELAY_POSTCALL_WEBHOOK_SECRET", str(exc)) from None
    return StoreSettings(
        database_url=Secret(url),
        data_dir=data_dir,
        history_days=ep.integer(env, "RELAY_HISTORY_DAYS", 90, 0),
        redact_numbers=ep.boolean(env, "RELAY_REDACT_NUMBERS", False),
        webhook_url=webhook_url,
        webhook_secret=Secret(secret),
        prices=parse_prices(ep.json_value(env, "RELAY_PRICES_JSON")),
    )
