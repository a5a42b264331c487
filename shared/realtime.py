"""OpenAI Realtime GA events, typed (protocols.md section 2).

Server events the relay acts on decode to Structs; any other `type` decodes to
`UnknownServerEvent`, which keeps the raw fields so it can be passed through.
Unknown fields on known events are tolerated (the API adds fields over time).
"""

from __future__ import annotations

from typing import Annotated, Any, Union

import msgspec
from msgspec import UNSET, UnsetType

# The relay splices an audio delta and its item id into the frames it sends Twilio
# without re-encoding, so values that could break out of a JSON string are refused.
B64 = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9+/]*={0,2}\Z")]
PlainId = Annotated[str, msgspec.Meta(pattern=r'^[^"\\\x00-\x1f]*\Z')]

# --- shared pieces -------------------------------------------------------------------


class ContentPart(msgspec.Struct):
    type: str
    text: str | UnsetType | None = UNSET
    transcript: str | UnsetType | None = UNSET
    audio: str | UnsetType | None = UNSET


class Item(msgspec.Struct):
    """A conversation item. One struct for every item type; absent fields stay UNSET."""

    type: str
    id: str | UnsetType = UNSET
    object: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    role: str | UnsetType = UNSET
    content: list[ContentPart] | UnsetType = UNSET
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET
    call_id: str | UnsetType = UNSET
    output: str | UnsetType = UNSET
    server_label: str | UnsetType = UNSET


class ErrorInfo(msgspec.Struct):
    type: str = ""
    code: str | UnsetType | None = UNSET
    message: str = ""
    param: str | UnsetType | None = UNSET
    event_id: str | UnsetType | None = UNSET


class StatusDetails(msgspec.Struct):
    type: str | UnsetType = UNSET
    reason: str | UnsetType | None = UNSET
    error: ErrorInfo | UnsetType | None = UNSET


class Response(msgspec.Struct):
    id: str
    object: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    status_details: StatusDetails | UnsetType | None = UNSET
    output: list[Item] | UnsetType = UNSET
    usage: dict[str, Any] | UnsetType | None = UNSET
    conversation_id: str | UnsetType | None = UNSET
    output_modalities: list[str] | UnsetType = UNSET
    max_output_tokens: int | str | UnsetType = UNSET
    audio: dict[str, Any] | UnsetType | None = UNSET
    metadata: dict[str, Any] | UnsetType | None = UNSET


# --- client events (what the relay sends) ----------------------------------------------


class ClientEvent(msgspec.Struct, tag_field="type"):
    event_id: str | UnsetType = UNSET


class SessionUpdate(ClientEvent, tag="session.update"):
    session: dict[str, Any] = msgspec.field(default_factory=dict)


class InputAudioBufferAppend(ClientEvent, tag="input_audio_buffer.append"):
    audio: str = ""


class InputAudioBufferCommit(ClientEvent, tag="input_audio_buffer.commit"):
    pass


class InputAudioBufferClear(ClientEvent, tag="input_audio_buffer.clear"):
    pass


class ConversationItemCreate(ClientEvent, tag="conversation.item.create"):
    item: Item = msgspec.field(default_factory=lambda: Item(type="message"))
    previous_item_id: str | UnsetType | None = UNSET


class ConversationItemTruncate(ClientEvent, tag="conversation.item.truncate"):
    item_id: str = ""
    content_index: int = 0
    audio_end_ms: int = 0


class ConversationItemDelete(ClientEvent, tag="conversation.item.delete"):
    item_id: str = ""


class ConversationItemRetrieve(ClientEvent, tag="conversation.item.retrieve"):
    item_id: str = ""


class ResponseCreate(ClientEvent, tag="response.create"):
    response: dict[str, Any] | UnsetType = UNSET


class ResponseCancel(ClientEvent, tag="response.cancel"):
    response_id: str | UnsetType = UNSET


AnyClientEvent = Union[
    SessionUpdate,
    InputAudioBufferAppend,
    InputAudioBufferCommit,
    InputAudioBufferClear,
    ConversationItemCreate,
    ConversationItemTruncate,
    ConversationItemDelete,
    ConversationItemRetrieve,
    ResponseCreate,
    ResponseCancel,
]

# --- server events (what the relay reads) -----------------------------------------------


class ServerEvent(msgspec.Struct, tag_field="type"):
    event_id: str | UnsetType = UNSET


class SessionCreated(ServerEvent, tag="session.created"):
    session: dict[str, Any] = msgspec.field(default_factory=dict)


class SessionUpdated(ServerEvent, tag="session.updated"):
    session: dict[str, Any] = msgspec.field(default_factory=dict)


class ConversationItemAdded(ServerEvent, tag="conversation.item.added"):
    item: Item = msgspec.field(default_factory=lambda: Item(type="message"))
    previous_item_id: str | UnsetType | None = UNSET


class ConversationItemDone(ServerEvent, tag="conversation.item.done"):
    item: Item = msgspec.field(default_factory=lambda: Item(type="message"))
    previous_item_id: str | UnsetType | None = UNSET


class ConversationItemCreated(ServerEvent, tag="conversation.item.created"):
    """Beta-era name, still modelled by the SDK; accepted, never relied on."""

    item: Item = msgspec.field(default_factory=lambda: Item(type="message"))
    previous_item_id: str | UnsetType | None = UNSET


class ConversationItemTruncated(ServerEvent, tag="conversation.item.truncated"):
    item_id: str = ""
    content_index: int = 0
    audio_end_ms: int = 0


class ConversationItemDeleted(ServerEvent, tag="conversation.item.deleted"):
    item_id: str = ""


class SpeechStarted(ServerEvent, tag="input_audio_buffer.speech_started"):
    audio_start_ms: int = 0
    item_id: str = ""


class SpeechStopped(ServerEvent, tag="input_audio_buffer.speech_stopped"):
    audio_end_ms: int = 0
    item_id: str = ""


class InputAudioCommitted(ServerEvent, tag="input_audio_buffer.committed"):
    item_id: str = ""
    previous_item_id: str | UnsetType | None = UNSET


class InputAudioCleared(ServerEvent, tag="input_audio_buffer.cleared"):
    pass


class InputAudioTimeoutTriggered(ServerEvent, tag="input_audio_buffer.timeout_triggered"):
    audio_start_ms: int = 0
    audio_end_ms: int = 0
    item_id: str = ""


class InputTranscriptionDelta(ServerEvent, tag="conversation.item.input_audio_transcription.delta"):
    item_id: str = ""
    content_index: int | UnsetType = UNSET
    delta: str | UnsetType = UNSET


class InputTranscriptionCompleted(
    ServerEvent, tag="conversation.item.input_audio_transcription.completed"
):
    item_id: str = ""
    content_index: int = 0
    transcript: str = ""
    usage: dict[str, Any] | UnsetType = UNSET


class InputTranscriptionFailed(
    ServerEvent, tag="conversation.item.input_audio_transcription.failed"
):
    item_id: str = ""
    content_index: int = 0
    error: ErrorInfo = msgspec.field(default_factory=ErrorInfo)


class ResponseCreated(ServerEvent, tag="response.created"):
    response: Response = msgspec.field(default_factory=lambda: Response(id=""))


class ResponseDone(ServerEvent, tag="response.done"):
    response: Response = msgspec.field(default_factory=lambda: Response(id=""))


class OutputItemAdded(ServerEvent, tag="response.output_item.added"):
    response_id: str = ""
    output_index: int = 0
    item: Item = msgspec.field(default_factory=lambda: Item(type="message"))


class OutputItemDone(ServerEvent, tag="response.output_item.done"):
    response_id: str = ""
    output_index: int = 0
    item: Item = msgspec.field(default_factory=lambda: Item(type="message"))


class ContentPartAdded(ServerEvent, tag="response.content_part.added"):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0
    part: ContentPart = msgspec.field(default_factory=lambda: ContentPart(type="audio"))


class ContentPartDone(ServerEvent, tag="response.content_part.done"):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0
    part: ContentPart = msgspec.field(default_factory=lambda: ContentPart(type="audio"))


class OutputAudioDelta(ServerEvent, tag="response.output_audio.delta"):
    response_id: str = ""
    item_id: PlainId = ""
    output_index: int = 0
    content_index: int = 0
    delta: B64 = ""


class OutputAudioDone(ServerEvent, tag="response.output_audio.done"):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0


class OutputAudioTranscriptDelta(ServerEvent, tag="response.output_audio_transcript.delta"):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0
    delta: str = ""


class OutputAudioTranscriptDone(ServerEvent, tag="response.output_audio_transcript.done"):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0
    transcript: str = ""


class OutputTextDelta(ServerEvent, tag="response.output_text.delta"):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0
    delta: str = ""


class OutputTextDone(ServerEvent, tag="response.output_text.done"):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0
    text: str = ""


class FunctionCallArgumentsDelta(ServerEvent, tag="response.function_call_arguments.delta"):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    call_id: str = ""
    delta: str = ""


class FunctionCallArgumentsDone(ServerEvent, tag="response.function_call_arguments.done"):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    call_id: str = ""
    name: str = ""
    arguments: str = ""


class RateLimit(msgspec.Struct):
    name: str = ""
    limit: int = 0
    remaining: int = 0
    reset_seconds: float = 0.0


class RateLimitsUpdated(ServerEvent, tag="rate_limits.updated"):
    rate_limits: list[RateLimit] = msgspec.field(default_factory=list)


class Error(ServerEvent, tag="error"):
    error: ErrorInfo = msgspec.field(default_factory=ErrorInfo)


# WebRTC/SIP only (the service plays the audio itself): where playback is, and keypresses.


class OutputAudioBufferStarted(ServerEvent, tag="output_audio_buffer.started"):
    response_id: str = ""


class OutputAudioBufferStopped(ServerEvent, tag="output_audio_buffer.stopped"):
    response_id: str = ""


class OutputAudioBufferCleared(ServerEvent, tag="output_audio_buffer.cleared"):
    response_id: str = ""


class DtmfReceived(ServerEvent, tag="input_audio_buffer.dtmf_event_received"):
    event: str = ""  # the key: 0-9, *, #, A-D
    received_at: int = 0


KnownServerEvent = Union[
    SessionCreated,
    SessionUpdated,
    ConversationItemAdded,
    ConversationItemDone,
    ConversationItemCreated,
    ConversationItemTruncated,
    ConversationItemDeleted,
    SpeechStarted,
    SpeechStopped,
    InputAudioCommitted,
    InputAudioCleared,
    InputAudioTimeoutTriggered,
    InputTranscriptionDelta,
    InputTranscriptionCompleted,
    InputTranscriptionFailed,
    ResponseCreated,
    ResponseDone,
    OutputItemAdded,
    OutputItemDone,
    ContentPartAdded,
    ContentPartDone,
    OutputAudioDelta,
    OutputAudioDone,
    OutputAudioTranscriptDelta,
    OutputAudioTranscriptDone,
    OutputTextDelta,
    OutputTextDone,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    RateLimitsUpdated,
    Error,
    OutputAudioBufferStarted,
    OutputAudioBufferStopped,
    OutputAudioBufferCleared,
    DtmfReceived,
]


class UnknownServerEvent(msgspec.Struct):
    """An event type this relay does not model; `raw` holds it whole for pass-through."""

    type: str
    raw: dict[str, Any]


AnyServerEvent = Union[KnownServerEvent, UnknownServerEvent]


class _Envelope(msgspec.Struct):
    type: str


def _tag_of(cls: type[msgspec.Struct]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


SERVER_EVENT_TYPES: dict[str, type[msgspec.Struct]] = {
    _tag_of(c): c
    for c in KnownServerEvent.__args__  # type: ignore[attr-defined]
}
CLIENT_EVENT_TYPES: dict[str, type[msgspec.Struct]] = {
    _tag_of(c): c
    for c in AnyClientEvent.__args__  # type: ignore[attr-defined]
}

_server_decoder: msgspec.json.Decoder[KnownServerEvent] = msgspec.json.Decoder(KnownServerEvent)
_client_decoder: msgspec.json.Decoder[AnyClientEvent] = msgspec.json.Decoder(AnyClientEvent)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


class AudioDelta(msgspec.Struct):
    """Hot path: only what relaying an audio delta needs; other fields are skipped.

    No pattern checks here (a regex over every delta cost more than the rest of the hop):
    `audio_delta` only accepts events with no backslash, and without an escape a decoded
    JSON string cannot hold a quote, a backslash or a control character, so the values are
    safe to splice into JSON as they are."""

    type: str
    response_id: str = ""
    item_id: str = ""
    delta: str = ""


_delta_decoder = msgspec.json.Decoder(AudioDelta)
_DELTA_TYPE = "response.output_audio.delta"
_DELTA_STR = f'"{_DELTA_TYPE}"'
_DELTA_BYTES = _DELTA_STR.encode()


def audio_delta(data: bytes | str) -> AudioDelta | None:
    """Hot path: an audio delta, decoded lean (and validated for splicing), or None for any
    other event (or a malformed one: `decode_server_event` then says why). Never raises."""
    if isinstance(data, str):
        if _DELTA_STR not in data or "\\" in data:
            return None
    elif _DELTA_BYTES not in data or b"\\" in data:
        return None
    try:
        event = _delta_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError):
        return None
    return event if event.type == _DELTA_TYPE else None


def decode_server_event(data: bytes | str) -> AnyServerEvent:
    """Decode one server event. Unknown types pass through; malformed JSON raises DecodeError."""
    try:
        # One pass for the events we model (audio deltas are most of the traffic); only an
        # unknown type pays for a second look.
        return _server_decoder.decode(data)
    except msgspec.ValidationError:
        env = _envelope_decoder.decode(data)  # raises if `type` is missing or not a string
        if env.type in SERVER_EVENT_TYPES:
            raise  # a known event with a field of the wrong type
        return UnknownServerEvent(type=env.type, raw=_dict_decoder.decode(data))
    except (RecursionError, UnicodeEncodeError):  # deep nesting; a str with lone surrogates
        raise msgspec.DecodeError("JSON is nested too deeply or not valid UTF-8") from None


def decode_client_event(data: bytes | str) -> AnyClientEvent:
    """Decode one client event (used by the simulated model); unknown types raise."""
    return _client_decoder.decode(data)


def encode(event: ClientEvent | ServerEvent) -> bytes:
    return _encoder.encode(event)


def encode_server_event(event: AnyServerEvent) -> bytes:
    if isinstance(event, UnknownServerEvent):
        return _encoder.encode(event.raw)
    return _encoder.encode(event)
