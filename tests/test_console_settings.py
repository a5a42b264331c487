"""Console settings from env, and the login pieces."""

from __future__ import annotations

import pytest

from console import auth
from console.phone import PhoneNumberError, mask, normalize_e164
from console.settings import load
from shared.envparse import SettingsError
from shared.secret import Secret


def test_defaults() -> None:
    s = load({})
    assert s.relay_url == "http://localhost:8081"
    assert s.logs_url == "ws://localhost:8081/logs"
    assert s.port == 3000 and s.record_calls is False
    assert not s.twilio_configured and s.twiml_url == ""


def test_original_relay_env_name_is_a_fallback() -> None:
    assert load({"NEXT_PUBLIC_REALTIME_SERVER_URL": "https://r.example/"}).relay_url == (
        "https://r.example"
    )
    both = {"RELAY_URL": "http://a:1", "NEXT_PUBLIC_REALTIME_SERVER_URL": "http://b:2"}
    assert load(both).relay_url == "http://a:1"
    assert load({"RELAY_URL": "https://r.example"}).logs_url == "wss://r.example/logs"


def test_twiml_url_defaults_to_public_url() -> None:
    s = load({"PUBLIC_URL": "https://abc.ngrok.app/"})
    assert s.twiml_url == s.webhook_url == "https://abc.ngrok.app/twiml"
    s = load({"PUBLIC_URL": "https://abc.ngrok.app", "TWILIO_TWIML_URL": "https://t.example/x"})
    assert s.twiml_url == "https://t.example/x"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"RELAY_URL": "localhost:8081"}, "RELAY_URL"),
        ({"TWILIO_ACCOUNT_SID": "SK123"}, "TWILIO_ACCOUNT_SID"),
        ({"TWILIO_OUTBOUND_NUMBER": "555-0100"}, "TWILIO_OUTBOUND_NUMBER"),
        ({"CONSOLE_RECORD_CALLS": "maybe"}, "CONSOLE_RECORD_CALLS"),
        ({"CONSOLE_PORT": "http"}, "CONSOLE_PORT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(env)
    assert str(err.value).startswith(f"{name}:")


def test_secrets_never_show() -> None:
    s = load(
        {
            "TWILIO_AUTH_TOKEN": "tw-s3cret",
            "RELAY_CONSOLE_TOKEN": "relay-s3cret",
            "CONSOLE_PASSWORD": "pw-s3cret",
        }
    )
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)
    assert s.twilio_auth_token.get() == "tw-s3cret"


def test_password_check_is_exact_and_unset_never_matches() -> None:
    pw = Secret("correct horse")
    assert auth.check_password(pw, "correct horse")
    assert not auth.check_password(pw, "correct hors")
    assert not auth.check_password(Secret(""), "")


def test_session_token_signed_and_expiring() -> None:
    pw = Secret("pw")
    token = auth.issue_token(pw, now=1000.0, ttl=60)
    assert auth.verify_token(pw, token, now=1030.0)
    assert not auth.verify_token(pw, token, now=1061.0)  # expired
    assert not auth.verify_token(Secret("other"), token, now=1030.0)  # password changed
    expires, sig = token.split(".")
    assert not auth.verify_token(pw, f"{int(expires) + 9999}.{sig}", now=1030.0)  # forged
    assert not auth.verify_token(pw, "", now=1030.0)
    assert not auth.verify_token(Secret(""), token, now=1030.0)


def test_delay_grows_after_failures_and_resets() -> None:
    t = auth.LoginThrottle(window_s=300)
    assert t.delay(0) == 0
    t.failed(0)
    first = t.delay(1)
    t.failed(1)
    assert t.delay(2) > first > 0
    for i in range(20):
        t.failed(2 + i)
    assert t.delay(30) == auth.MAX_DELAY_S
    assert t.delay(1000) == 0  # old failures age out
    t.failed(1000)
    t.succeeded()
    assert t.delay(1001) == 0


def test_the_wait_is_said_in_whole_seconds() -> None:
    assert "checking the password in 1 s" in auth.wait_message(0.5)
    assert "in 5 s" in auth.wait_message(auth.MAX_DELAY_S)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [("+1 (415) 555-0100", "+14155550100"), ("0044 20 7946 0958", "+442079460958")],
)
def test_e164_normalised(raw: str, e164: str) -> None:
    assert normalize_e164(raw) == e164


@pytest.mark.parametrize(
    ("raw", "why"),
    [("4155550100", "country code"), ("+0123", "E.164"), ("+1abc", "E.164"), ("", "E.164")],
)
def test_e164_refused_with_reason(raw: str, why: str) -> None:
    with pytest.raises(PhoneNumberError, match=why):
        normalize_e164(raw)


def test_mask_keeps_last_four() -> None:
    assert mask("+14155550100") == "••••••••0100"
