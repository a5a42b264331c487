"""A minimal RFC 6455 WebSocket client and server on asyncio Protocols, for the load generator.

Why not aiohttp or websockets here: the generator core must do the mirror image of all the
relay's socket work (both sides of both sockets) for hundreds of calls, so every microsecond
it spends per frame caps the number of calls it can drive. This speaks the real wire protocol
(HTTP/1.1 upgrade with Sec-WebSocket-Accept, masked client frames with a fresh random key,
ping/pong, close handshake) and nothing else: no extensions, no fragmentation on send,
text frames only. Masking/unmasking uses aiohttp's C helper when present.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable

try:  # aiohttp ships a Cython XOR mask; fall back to Python ints
    from aiohttp._websocket.mask import _websocket_mask_cython as _mask_inplace  # type: ignore
except ImportError:  # pragma: no cover

    def _mask_inplace(mask: bytes, data: bytearray) -> None:
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        data[:] = (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_rand = os.urandom


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


def frame(payload: bytes, opcode: int = OP_TEXT, masked: bool = False) -> bytes:
    """One final frame. Client frames are masked with a fresh random key (RFC 6455 5.3)."""
    n = len(payload)
    b0 = 0x80 | opcode
    mbit = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, mbit | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not masked:
        return head + payload
    key = _rand(4)
    data = bytearray(payload)
    _mask_inplace(key, data)
    return head + key + data


OnMessage = Callable[[int, bytes], None]


class FrameReader:
    """Incremental frame parser; calls on_frame(opcode, payload) for each whole frame."""

    __slots__ = ("_buf", "_frag", "_frag_op", "on_frame")

    def __init__(self, on_frame: OnMessage) -> None:
        self._buf = bytearray()
        self.on_frame = on_frame
        self._frag: bytearray | None = None
        self._frag_op = 0

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        on_frame = self.on_frame
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            hl = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                hl = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hl = 10
            masked = b1 & 0x80
            if masked:
                hl += 4
            if end - pos < hl + n:
                break
            if masked:
                key = bytes(buf[pos + hl - 4 : pos + hl])
                payload = bytearray(buf[pos + hl : pos + hl + n])
                _mask_inplace(key, payload)
                body = bytes(payload)
            else:
                body = bytes(buf[pos + hl : pos + hl + n])
            pos += hl + n
            op = b0 & 0x0F
            fin = b0 & 0x80
            if op == OP_CONT or (not fin and op < 8):
                if op != OP_CONT:
                    self._frag, self._frag_op = bytearray(body), op
                    continue
                if self._frag is None:
                    continue
                self._frag += body
                if not fin:
                    continue
                body, op, self._frag = bytes(self._frag), self._frag_op, None
            on_frame(op, body)
        if pos:
            del buf[:pos]


class _Base(asyncio.Protocol):
    transport: asyncio.Transport | None = None
    masked = False

    def __init__(self) -> None:
        self._reader = FrameReader(self._on_frame)
        self._hs = bytearray()
        self._upgraded = False
        self.closed = asyncio.get_running_loop().create_future()

    def send_text(self, payload: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(frame(payload, OP_TEXT, self.masked))

    def send_raw(self, data: bytes) -> None:
        """An already framed message (the caller pre-builds its frames)."""
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)

    def close(self, code: int = 1000) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(frame(struct.pack("!H", code), OP_CLOSE, self.masked))
            asyncio.get_running_loop().call_later(1.0, t.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_closed()

    def on_closed(self) -> None:
        pass

    def on_message(self, data: bytes) -> None:
        raise NotImplementedError

    def _on_frame(self, op: int, body: bytes) -> None:
        if op in (OP_TEXT, OP_BINARY):
            self.on_message(body)
        elif op == OP_PING:
            t = self.transport
            if t is not None:
                t.write(frame(body, OP_PONG, self.masked))
        elif op == OP_CLOSE:
            t = self.transport
            if t is not None and not t.is_closing():
                t.write(frame(body[:2], OP_CLOSE, self.masked))
                t.close()

    def data_received(self, data: bytes) -> None:
        if self._upgraded:
            self._reader.feed(data)
            return
        self._hs += data
        end = self._hs.find(b"\r\n\r\n")
        if end < 0:
            return
        head, rest = bytes(self._hs[:end]), bytes(self._hs[end + 4 :])
        self._hs = bytearray()
        if self._handshake(head):
            self._upgraded = True
            if rest:
                self._reader.feed(rest)

    def _handshake(self, head: bytes) -> bool:
        raise NotImplementedError


class ClientProtocol(_Base):
    """Client side: send the upgrade on connect; `opened` resolves on 101."""

    masked = True

    def __init__(self, host: str, path: str, headers: dict[str, str]) -> None:
        super().__init__()
        self._key = base64.b64encode(os.urandom(16))
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        ).encode()
        self.opened = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def _handshake(self, head: bytes) -> bool:
        status = head.split(b"\r\n", 1)[0]
        ok = b" 101 " in status + b" " and accept_key(self._key) in head
        if not self.opened.done():
            if ok:
                self.opened.set_result(None)
            else:
                self.opened.set_exception(ConnectionError(f"upgrade refused: {status!r}"))
        if not ok and self.transport is not None:
            self.transport.close()
        return ok

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the upgrade"))
        super().connection_lost(exc)


async def connect(factory: Callable[[], ClientProtocol], host: str, port: int) -> ClientProtocol:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(factory, host, port)
    await proto.opened
    return proto


class ServerProtocol(_Base):
    """Server side: answer any GET upgrade with 101 (no extensions), then frames."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _handshake(self, head: bytes) -> bool:
        key = b""
        auth = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"sec-websocket-key":
                key = value.strip()
            elif lname == b"authorization":
                auth = value.strip()
        t = self.transport
        assert t is not None
        if not key or not auth.startswith(b"Bearer "):
            t.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            t.close()
            return False
        t.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
        )
        self.on_open()
        return True

    def on_open(self) -> None:
        pass
