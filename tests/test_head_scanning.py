"""Receiving a head: linear work however it is dribbled, and a fast 400 for what is not HTTP.

The work test runs the real connection loop over a socket pair whose server end hands out
one byte per ``recv``, and measures work without the clock: the bytes the head search is
asked to look through, and the Python lines Nex executes.  The other tests talk to the real
server over loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import unittest
from typing import Callable, Optional, Tuple

from nex.process.config import Config
from nex.process.connection import Connection
from nex.site.routing import Dispatcher
from nex.site.hosts import HostValidator
from nex.process.log import Logger
from nex.files.templates import TemplateSet
from tests.support import REPO, SOCKET_TIMEOUT, NexServer, ResponseReader, read_all
from tests.support import temp_root

NEX_FOLDER = os.path.join(REPO, "nex") + os.sep
#: The first bytes of a TLS 1.2 ClientHello record: handshake (0x16), version 3.1, length,
#: ClientHello (1), its length, client version 3.3, then random bytes.
CLIENT_HELLO = (b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + bytes(range(32))
                + b"\x00\x00\x02\x13\x01\x01\x00")


class OneByteSocket(socket.socket):
    """A socket whose ``recv`` returns at most one byte: a client dribbling its head."""

    def recv(self, size: int, flags: int = 0) -> bytes:
        return super().recv(1, flags)


class CountingBuffer(bytearray):
    """A connection buffer that counts the bytes its ``find`` calls are asked to search."""

    searched = 0

    def find(self, sub, start: int = 0, end: Optional[int] = None) -> int:  # type: ignore
        stop = len(self) if end is None else min(end, len(self))
        self.searched += max(0, stop - start)
        return super().find(sub, start, end)


def head_of(size: int) -> bytes:
    """A valid request head of exactly ``size`` bytes, in field lines of about 1000 bytes."""
    head = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n"
    number = 0
    while len(head) + 2 < size:
        line = b"X-Fill-%03d: " % number
        room = size - len(head) - 2 - len(line) - 2
        head += line + b"a" * min(1000, room) + b"\r\n"
        number += 1
    head += b"\r\n"
    if len(head) != size:
        raise AssertionError(len(head))
    return head


class DribbledHeadWorkTest(unittest.TestCase):
    """A head sent one byte per packet costs work in proportion to its length."""

    def setUp(self) -> None:
        self.root = temp_root(self, {"hello.txt": b"hello, world\n"})
        # A generous head time-out: tracing every line slows the loop down a lot.
        config = Config(document_root=os.path.realpath(self.root),
                        error_pages=os.path.join(REPO, "error_pages"),
                        templates=os.path.join(REPO, "other_templates"),
                        request_head_timeout=3600.0)
        templates = TemplateSet.load(config.error_pages, config.templates)
        self.site = Dispatcher(config, templates, HostValidator(("*",)), "Nex")
        devnull = os.open(os.devnull, os.O_WRONLY)
        self.logger = Logger(devnull, devnull, owned=(devnull,))
        self.addCleanup(self.logger.close)

    def serve_dribbled(self, head: bytes) -> Tuple[int, int, bytes]:
        """``(bytes searched, Nex lines executed, response)`` for ``head`` sent byte by byte.

        The client sends the whole head and half-closes; the connection loop runs here, in
        this thread, reading one byte per ``recv`` until it answers and sees the end.
        """
        server_end, client_end = socket.socketpair()
        dribbling = OneByteSocket(server_end.family, server_end.type,
                                  fileno=server_end.detach())
        client_end.settimeout(SOCKET_TIMEOUT)
        with client_end:
            client_end.sendall(head)
            client_end.shutdown(socket.SHUT_WR)
            connection = Connection(dribbling, "127.0.0.1", self.site, self.logger,
                                    threading.Event())
            connection._buffer = buffer = CountingBuffer()
            lines = count_nex_lines(connection.serve)
            response = read_all(client_end)
        return buffer.searched, lines, response

    def test_work_grows_linearly_with_the_head(self) -> None:
        results = {}
        for size in (16 * 1024, 64 * 1024):
            searched, lines, response = self.serve_dribbled(head_of(size))
            self.assertTrue(response.startswith(b"HTTP/1.1 200 OK\r\n"), response[:100])
            self.assertTrue(response.endswith(b"\r\n\r\nhello, world\n"), response[-100:])
            # Every byte of the head is looked at, at least once.
            self.assertGreaterEqual(searched, size // 2)
            results[size] = (searched, lines)
        (small_searched, small_lines), (large_searched, large_lines) = results.values()
        # Four times the bytes: about four times the work; rescanning would give sixteen.
        self.assertLess(large_searched, 5 * small_searched, results)
        self.assertLess(large_lines, 5 * small_lines, results)


def count_nex_lines(call: Callable[[], object]) -> int:
    """How many lines of Nex's own modules ``call`` executes in this thread."""
    executed = 0

    def in_nex(frame, event: str, arg: object):
        nonlocal executed
        if event == "line":
            executed += 1
        return in_nex

    def on_call(frame, event: str, arg: object):
        return in_nex if frame.f_code.co_filename.startswith(NEX_FOLDER) else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        call()
    finally:
        sys.settrace(previous)
    return executed


class NotHttpTest(unittest.TestCase):
    """Bytes that cannot start a request are answered with 400 at once, over loopback."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp(prefix="nex-not-http-")
        with open(os.path.join(cls.root, "hello.txt"), "wb") as file:
            file.write(b"hello, world\n")
        # A head time-out longer than the client waits: only an answer from the first
        # bytes can arrive in time.
        cls.server = NexServer(cls.root, {"timeouts": {"request_head": 600}}).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_tls_client_hello_gets_a_400_page_and_a_close(self) -> None:
        with self.server.connect(timeout=SOCKET_TIMEOUT) as sock:
            sock.sendall(CLIENT_HELLO)  # and wait: a TLS client sends nothing more
            data = read_all(sock)
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), head)
        self.assertIn(b"\r\nConnection: close", head)
        self.assertIn(b"\r\nContent-Type: text/html; charset=utf-8", head)
        self.assertIn(b"400", body)
        self.assertIn(b"</html>", body)

    def test_a_later_http_1_minor_version_is_served_as_http_1_1(self) -> None:
        with self.server.connect(timeout=SOCKET_TIMEOUT) as sock:
            reader = ResponseReader(sock)
            for _ in range(2):  # persistent by default, as HTTP/1.1 is
                sock.sendall(b"GET /hello.txt HTTP/1.2\r\nHost: localhost\r\n\r\n")
                status, headers, body = reader.read()
                self.assertEqual((status, body), (200, b"hello, world\n"))
                self.assertEqual(headers["connection"], "keep-alive")
            sock.sendall(b"GET /hello.txt HTTP/1.9\r\n\r\n")  # Host is required
            status, headers, _ = reader.read()
            self.assertEqual((status, headers["connection"]), (400, "close"))

    def test_http_2_is_not_supported(self) -> None:
        with self.server.connect(timeout=SOCKET_TIMEOUT) as sock:
            sock.sendall(b"GET /hello.txt HTTP/2.0\r\nHost: localhost\r\n\r\n")
            status, headers, _ = ResponseReader(sock).read()
        self.assertEqual((status, headers["connection"]), (505, "close"))


if __name__ == "__main__":
    unittest.main()
