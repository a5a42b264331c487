"""Twilio Media Streams messages (bidirectional `<Connect><Stream>`), typed.

Field names and string-typed numbers follow Twilio exactly (protocols.md section 1).
Unknown fields are tolerated; an unknown `event` is a decode error the caller reports.
"""

from __future__ import annotations

from typing import Annotated, Union

import msgspec

# The relay splices these into JSON it sends on (the media payload into the model's
# `input_audio_buffer.append`, the SIDs into every frame and console event) without
# re-encoding, so a value that could break out of a JSON string (a quote, a backslash,
# a control character) is refused at decode time.
JsonSafe = Annotated[str, msgspec.Meta(pattern=r'^[^"\\\x00-\x1f]*\Z')]
Sid = Annotated[str, msgspec.Meta(pattern=r'^[^"\\\x00-\x1f]{1,64}\Z')]


class MediaFormat(msgspec.Struct):
    encoding: str = "audio/x-mulaw"
    sampleRate: int = 8000
    channels: int = 1


class StartInfo(msgspec.Struct):
    streamSid: Sid
    callSid: Sid
    accountSid: str = ""
    tracks: list[str] = msgspec.field(default_factory=lambda: ["inbound"])
    customParameters: dict[str, str] = msgspec.field(default_factory=dict)
    mediaFormat: MediaFormat = msgspec.field(default_factory=MediaFormat)


class MediaInfo(msgspec.Struct):
    payload: JsonSafe
    track: str = "inbound"
    chunk: str = ""
    timestamp: str = ""


class MarkInfo(msgspec.Struct):
    name: str


class DtmfInfo(msgspec.Struct):
    digit: str
    track: str = "inbound_track"


class StopInfo(msgspec.Struct):
    accountSid: str = ""
    callSid: str = ""


class _Inbound(msgspec.Struct, tag_field="event"):
    pass


class Connected(_Inbound, tag="connected"):
    protocol: str = "Call"
    version: str = "1.0.0"


class Start(_Inbound, tag="start"):
    start: StartInfo
    streamSid: str
    sequenceNumber: str = "1"


class Media(_Inbound, tag="media"):
    media: MediaInfo
    streamSid: str
    sequenceNumber: str = ""


class Mark(_Inbound, tag="mark"):
    mark: MarkInfo
    streamSid: str
    sequenceNumber: str = ""


class Dtmf(_Inbound, tag="dtmf"):
    dtmf: DtmfInfo
    streamSid: str
    sequenceNumber: str = ""


class Stop(_Inbound, tag="stop"):
    streamSid: str
    stop: StopInfo = msgspec.field(default_factory=StopInfo)
    sequenceNumber: str = ""


TwilioInbound = Union[Connected, Start, Media, Mark, Dtmf, Stop]

# Outbound: only media, mark and clear are allowed (anything else is error 31951).


class OutMediaInfo(msgspec.Struct):
    payload: str


class _Outbound(msgspec.Struct, tag_field="event"):
    pass


class OutMedia(_Outbound, tag="media"):
    streamSid: str
    media: OutMediaInfo


class OutMark(_Outbound, tag="mark"):
    streamSid: str
    mark: MarkInfo


class Clear(_Outbound, tag="clear"):
    streamSid: str


TwilioOutbound = Union[OutMedia, OutMark, Clear]

_inbound_decoder: msgspec.json.Decoder[TwilioInbound] = msgspec.json.Decoder(TwilioInbound)
_outbound_decoder: msgspec.json.Decoder[TwilioOutbound] = msgspec.json.Decoder(TwilioOutbound)
_encoder = msgspec.json.Encoder()


def decode_inbound(data: bytes | str) -> TwilioInbound:
    """Decode one frame Twilio sent; raises msgspec.DecodeError with a reason."""
    try:
        return _inbound_decoder.decode(data)
    except (RecursionError, UnicodeEncodeError):  # deep nesting; a str with lone surrogates
        raise msgspec.DecodeError("JSON is nested too deeply or not valid UTF-8") from None


class _PayloadOnly(msgspec.Struct):
    payload: str


class _NameOnly(msgspec.Struct):
    name: str


class HotFrame(msgspec.Struct):
    """Just what the hot path needs from a frame; every other field is skipped, not built."""

    event: str
    streamSid: str = ""
    media: _PayloadOnly | None = None
    mark: _NameOnly | None = None


_hot_decoder = msgspec.json.Decoder(HotFrame)


def hot_frame(data: str) -> HotFrame | None:
    """Hot path: a media frame (its payload safe to splice into JSON) or a mark echo, decoded
    lean; None for anything else, which `decode_inbound` then decodes, validates and reports.
    Never raises.

    A frame with a backslash always takes the full path: only an escape can put a quote, a
    backslash or a control character into a decoded string, and payloads are spliced as is.
    """
    if "\\" in data:
        return None
    try:
        frame = _hot_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError):
        return None
    event = frame.event
    if (event == "media" and frame.media is not None) or (
        event == "mark" and frame.mark is not None
    ):
        return frame
    return None


def media_payload(data: str) -> str | None:
    """Hot path: the payload of a media frame, or None for anything else (see `hot_frame`)."""
    frame = hot_frame(data)
    return frame.media.payload if frame is not None and frame.media is not None else None


def decode_outbound(data: bytes | str) -> TwilioOutbound:
    """Decode one frame sent to Twilio (used by the simulated caller)."""
    return _outbound_decoder.decode(data)


def encode(msg: TwilioInbound | TwilioOutbound) -> bytes:
    return _encoder.encode(msg)
