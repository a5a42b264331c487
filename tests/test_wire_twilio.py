"""Twilio Media Streams wire types (protocols.md sections 1.3 and 1.4)."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest

from shared import twilio

AC = "AC" + "0123456789abcdef" * 2
CA = "CA" + "fedcba9876543210" * 2
MZ = "MZ" + "00112233445566778899aabbccddeeff"
PAYLOAD = base64.b64encode(bytes(range(160))).decode()  # 20 ms of mu-law: 216 b64 chars

# The examples of protocols.md 1.3 verbatim, then with real-looking SIDs and payload.
_DOC_EXAMPLES = r"""
{"event":"connected","protocol":"Call","version":"1.0.0"}
{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC…","streamSid":"MZ…","callSid":"CA…","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"session_id":"abc123"}},"streamSid":"MZ…"}
{"event":"media","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"<216 b64 chars>"},"streamSid":"MZ…"}
{"event":"dtmf","streamSid":"MZ…","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}
{"event":"mark","sequenceNumber":"4","streamSid":"MZ…","mark":{"name":"my label"}}
{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"AC…","callSid":"CA…"},"streamSid":"MZ…"}
"""  # noqa: E501


def _real(example: str) -> str:
    for placeholder, value in (
        ("AC…", AC),
        ("CA…", CA),
        ("MZ…", MZ),
        ("<216 b64 chars>", PAYLOAD),
    ):
        example = example.replace(placeholder, value)
    return example


CONNECTED, START, MEDIA, DTMF, MARK, STOP = (
    _real(line) for line in _DOC_EXAMPLES.strip().splitlines()
)

ALL_INBOUND = {
    "connected": CONNECTED,
    "start": START,
    "media": MEDIA,
    "dtmf": DTMF,
    "mark": MARK,
    "stop": STOP,
}


def test_payload_is_the_documented_size() -> None:
    assert len(PAYLOAD) == 216


def test_connected_decodes() -> None:
    msg = twilio.decode_inbound(CONNECTED)
    assert msg == twilio.Connected(protocol="Call", version="1.0.0")


def test_start_decodes_with_custom_parameters_and_media_format() -> None:
    msg = twilio.decode_inbound(START)
    assert isinstance(msg, twilio.Start)
    assert msg.streamSid == MZ
    assert msg.sequenceNumber == "1"
    assert msg.start.streamSid == MZ
    assert msg.start.callSid == CA
    assert msg.start.accountSid == AC
    assert msg.start.tracks == ["inbound"]
    assert msg.start.customParameters == {"session_id": "abc123"}
    assert msg.start.mediaFormat == twilio.MediaFormat("audio/x-mulaw", 8000, 1)


def test_media_decodes_with_string_numbers() -> None:
    msg = twilio.decode_inbound(MEDIA)
    assert isinstance(msg, twilio.Media)
    assert msg.streamSid == MZ
    assert msg.sequenceNumber == "2"
    assert msg.media.track == "inbound"
    assert msg.media.chunk == "1"
    assert msg.media.timestamp == "20"
    assert base64.b64decode(msg.media.payload) == bytes(range(160))


def test_dtmf_decodes() -> None:
    msg = twilio.decode_inbound(DTMF)
    assert msg == twilio.Dtmf(
        dtmf=twilio.DtmfInfo(digit="1", track="inbound_track"), streamSid=MZ, sequenceNumber="5"
    )


def test_mark_decodes() -> None:
    msg = twilio.decode_inbound(MARK)
    assert msg == twilio.Mark(
        mark=twilio.MarkInfo(name="my label"), streamSid=MZ, sequenceNumber="4"
    )


def test_stop_decodes() -> None:
    msg = twilio.decode_inbound(STOP)
    assert msg == twilio.Stop(
        streamSid=MZ, stop=twilio.StopInfo(accountSid=AC, callSid=CA), sequenceNumber="5"
    )


@pytest.mark.parametrize("event", sorted(ALL_INBOUND))
def test_inbound_round_trip(event: str) -> None:
    raw = ALL_INBOUND[event]
    msg = twilio.decode_inbound(raw)
    wire = twilio.encode(msg)
    assert twilio.decode_inbound(wire) == msg
    # Re-encoded JSON is the same object Twilio sent (field order aside).
    assert json.loads(wire) == json.loads(raw)


@pytest.mark.parametrize("event", ["start", "media", "dtmf", "mark", "stop"])
def test_sequence_numbers_stay_strings_after_encoding(event: str) -> None:
    out = json.loads(twilio.encode(twilio.decode_inbound(ALL_INBOUND[event])))
    assert isinstance(out["sequenceNumber"], str)
    if event == "media":
        assert out["media"]["chunk"] == "1"
        assert out["media"]["timestamp"] == "20"


def test_integer_sequence_number_is_refused() -> None:
    bad = MARK.replace('"sequenceNumber":"4"', '"sequenceNumber":4')
    with pytest.raises(msgspec.ValidationError, match="sequenceNumber"):
        twilio.decode_inbound(bad)


@pytest.mark.parametrize("event", sorted(ALL_INBOUND))
def test_unknown_fields_are_tolerated(event: str) -> None:
    obj = json.loads(ALL_INBOUND[event])
    obj["futureField"] = {"anything": [1, 2]}
    for inner in ("start", "media", "dtmf", "mark", "stop"):
        if inner in obj:
            obj[inner]["newInner"] = "x"
    assert twilio.decode_inbound(json.dumps(obj)) == twilio.decode_inbound(ALL_INBOUND[event])


def test_unknown_event_raises_a_msgspec_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="event"):
        twilio.decode_inbound(f'{{"event":"sendDigits","streamSid":"{MZ}"}}')


@pytest.mark.parametrize(
    "raw",
    [
        '{"event":"media"',
        "not json",
        "",
        b"\xff\xfe",
        "[]",
        "{}",
        '{"event":"media","streamSid":"MZ1"}',  # media body missing
    ],
)
def test_malformed_frames_raise_msgspec_errors_only(raw: str | bytes) -> None:
    with pytest.raises(msgspec.DecodeError):  # ValidationError is a DecodeError too
        twilio.decode_inbound(raw)


def test_outbound_media_shape() -> None:
    out = twilio.encode(twilio.OutMedia(streamSid=MZ, media=twilio.OutMediaInfo(payload=PAYLOAD)))
    assert json.loads(out) == {"event": "media", "streamSid": MZ, "media": {"payload": PAYLOAD}}


def test_outbound_mark_shape() -> None:
    out = twilio.encode(twilio.OutMark(streamSid=MZ, mark=twilio.MarkInfo("resp_x:item_y:42")))
    assert json.loads(out) == {
        "event": "mark",
        "streamSid": MZ,
        "mark": {"name": "resp_x:item_y:42"},
    }


def test_outbound_clear_shape() -> None:
    assert json.loads(twilio.encode(twilio.Clear(streamSid=MZ))) == {
        "event": "clear",
        "streamSid": MZ,
    }


@pytest.mark.parametrize(
    "msg",
    [
        twilio.OutMedia(streamSid=MZ, media=twilio.OutMediaInfo(payload=PAYLOAD)),
        twilio.OutMark(streamSid=MZ, mark=twilio.MarkInfo("m1")),
        twilio.Clear(streamSid=MZ),
    ],
)
def test_outbound_round_trip(msg: twilio._Outbound) -> None:
    assert twilio.decode_outbound(twilio.encode(msg)) == msg


def test_outbound_decoder_refuses_what_twilio_refuses() -> None:
    with pytest.raises(msgspec.ValidationError):
        twilio.decode_outbound(f'{{"event":"sendDigits","streamSid":"{MZ}","digits":"1"}}')
    with pytest.raises(msgspec.ValidationError):
        twilio.decode_outbound('{"event":"clear"}')  # no streamSid


@pytest.mark.parametrize("line", _DOC_EXAMPLES.strip().splitlines())
def test_documented_examples_decode_verbatim(line: str) -> None:
    msg = twilio.decode_inbound(line)
    assert json.loads(twilio.encode(msg)) == json.loads(line)
