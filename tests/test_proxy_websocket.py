"""WebSocket through the proxy: the Upgrade handshake passed on, then frames both ways.

The origin and the client are written here with the standard library (RFC 6455 §4 and §5:
the handshake, masked client frames, unmasked server frames).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import struct
from typing import List, Tuple

from tests.support import ProxyTestCase, ThreadedOrigin, ok
from tests.support import SOCKET_TIMEOUT
from tests.support import read_head, receive_exactly

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE = 0x1, 0x8


def accept_value(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def frame(opcode: int, payload: bytes, masked: bool) -> bytes:
    """One final frame; payloads under 64 KiB."""
    length = (bytes([len(payload) | (0x80 if masked else 0)]) if len(payload) < 126
              else bytes([126 | (0x80 if masked else 0)]) + struct.pack("!H", len(payload)))
    if not masked:
        return bytes([0x80 | opcode]) + length + payload
    mask = os.urandom(4)
    return (bytes([0x80 | opcode]) + length + mask
            + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload)))


def read_frame(sock: socket.socket) -> Tuple[int, bytes]:
    """``(opcode, payload)`` of the next frame, unmasked."""
    first, second = receive_exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", receive_exactly(sock, 2))[0]
    mask = receive_exactly(sock, 4) if second & 0x80 else b""
    payload = receive_exactly(sock, length) if length else b""
    if mask:
        payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return first & 0x0F, payload


class WebSocketOrigin(ThreadedOrigin):
    """An echo server speaking WebSocket: it greets each client in the same send as its
    ``101`` head, then echoes text frames until a close frame, which it answers."""

    def __init__(self) -> None:
        self.heads: List[bytes] = []
        super().__init__()

    def serve(self, sock: socket.socket) -> None:
        sock.settimeout(SOCKET_TIMEOUT)
        with sock:
            try:
                head = read_head(sock)
                self.heads.append(head)
                key = re.search(rb"\r\nSec-WebSocket-Key: *([^\r]+)\r\n", head, re.I).group(1)
                sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n%s"
                             % (accept_value(key), frame(TEXT, b"welcome", False)))
                while True:
                    opcode, payload = read_frame(sock)
                    if opcode == CLOSE:
                        sock.sendall(frame(CLOSE, payload, False))
                        return
                    sock.sendall(frame(TEXT, payload, False))
            except (OSError, AssertionError):
                pass


class WebSocketTest(ProxyTestCase):
    def websocket_origin(self) -> WebSocketOrigin:
        origin = WebSocketOrigin()
        self.addCleanup(origin.close)
        return origin

    def handshake(self, port: int, upgrade: bytes = b"websocket") -> Tuple[socket.socket, bytes]:
        """A connection to the proxy that sent an upgrade for ``ws://127.0.0.1:port/chat``:
        the socket and the response head."""
        sock = self.server.connect()
        self.addCleanup(sock.close)
        self.key = base64.b64encode(os.urandom(16))
        sock.sendall(b"GET http://127.0.0.1:%d/chat HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     b"Upgrade: %s\r\nConnection: keep-alive, Upgrade\r\n"
                     b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                     % (port, port, upgrade, self.key))
        return sock, read_head(sock)

    def test_handshake_and_frames_both_ways_then_one_log_line(self) -> None:
        origin = self.websocket_origin()
        sock, head = self.handshake(origin.port)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head)
        self.assertRegex(head, rb"\r\nUpgrade: websocket\r\n")
        self.assertRegex(head, rb"\r\nConnection: Upgrade\r\n")
        self.assertIn(b"\r\nSec-WebSocket-Accept: %s\r\n" % accept_value(self.key), head)
        self.assertRegex(head, rb"\r\nVia: 1\.1 nex-[0-9a-f]{16}\r\n")
        self.assertEqual(read_frame(sock), (TEXT, b"welcome"))  # came with the 101 head
        for message in (b"hello", b"x" * 1000):
            sock.sendall(frame(TEXT, message, True))
            self.assertEqual(read_frame(sock), (TEXT, message))
        sock.sendall(frame(CLOSE, b"\x03\xe8", True))
        self.assertEqual(read_frame(sock), (CLOSE, b"\x03\xe8"))
        self.assertEqual(sock.recv(1), b"")
        origin_head, = origin.heads
        self.assertRegex(origin_head, rb"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n")
        self.assertIn(b"Sec-WebSocket-Key: %s\r\n" % self.key, origin_head)
        self.log_has(f'"GET http://127.0.0.1:{origin.port}/chat HTTP/1.1" 101 ')
        self.assertRegex(self.server.access_log(), r"(?m)/chat HTTP/1\.1\" 101 .* up=\d+ down=\d+$")

    def test_an_origin_without_websocket_answers_as_usual(self) -> None:
        origin = self.origin(lambda exchange: ok(b"no websocket here"))
        sock, head = self.handshake(origin.port)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertEqual(receive_exactly(sock, 17), b"no websocket here")
        exchange, = origin.received
        self.assertEqual(exchange.values("Upgrade"), ["websocket"])

    def test_other_upgrade_tokens_are_dropped(self) -> None:
        origin = self.origin(lambda exchange: ok(b"plain"))
        sock, head = self.handshake(origin.port, upgrade=b"h2c")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        exchange, = origin.received
        self.assertEqual((exchange.values("Upgrade"), exchange.values("Connection")), ([], []))
