"""Slow and vanishing clients: the head time-out from accept, a request body's minimum rate,
and a client that resets inside a request body.

The unit tests run the real connection loop over a socket pair, or a body reader over a
fake clock; the functional tests talk to the real server over loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import unittest
from unittest import mock

from nex.http.body import BodyReader
from nex.http.errors import HTTPError
from nex.http.framing import HeadLimits
from nex.http.request import parse_head
from nex.process.assembly import assemble
from nex.process.config import Config
from nex.process.connection import Connection
from tests.support import REPO, ProxyTestCase, ok, temp_root
from tests.support import (SOCKET_TIMEOUT, NexServer, capture_log, read_all, reset,
                           socketpair_dispatcher)
from tests.support import wait_until


class HeadTimeOutFromAcceptTest(unittest.TestCase):
    """``request_head`` counts from the accept, not from when a busy server got round to
    the connection's worker."""

    def test_slowloris_accepted_during_a_busy_period_is_not_given_a_fresh_time_out(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        log = capture_log(self)
        server_end, client_end = socket.socketpair()
        client_end.settimeout(SOCKET_TIMEOUT)
        with client_end:
            client_end.sendall(b"GET / HTTP/1.1\r\n")  # and nothing more
            # Accepted a whole head time-out ago: its worker starts only now.
            accepted = time.monotonic() - socketpair_dispatcher(root).config.request_head_timeout
            connection = Connection(server_end, "127.0.0.1", socketpair_dispatcher(root),
                                    log.logger, threading.Event(), accepted=accepted)
            worker = threading.Thread(target=connection.serve)
            worker.start()
            try:
                response = read_all(client_end)
            except ConnectionResetError:  # closed with the partial head unread
                response = b""
            worker.join(SOCKET_TIMEOUT)
        # Its time is up before its worker reads a byte: closed at once, without the 408
        # that a fresh time-out would end in.
        self.assertEqual(response, b"")
        self.assertFalse(worker.is_alive())


class FakeClient:
    """A client behind a fake clock: each receive waits ``seconds`` and brings ``data``,
    unless the deadline comes first (then 408, as the connection raises it)."""

    def __init__(self, data: bytes, seconds: float) -> None:
        self.now = 0.0
        self.data = data
        self.seconds = seconds

    def monotonic(self) -> float:
        return self.now

    def receive(self, deadline: float) -> bytes:
        if self.now + self.seconds > deadline:
            self.now = max(self.now, deadline)
            raise HTTPError(408, "The request body did not arrive in time.", close=True)
        self.now += self.seconds
        return self.data


def body_of(length: int, client: FakeClient, **rate) -> BodyReader:
    request = parse_head(f"PUT /f HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n"
                         .encode(), HeadLimits())
    # Each wait may last 100 s: only the rate limits these bodies.
    return BodyReader(request, bytearray(), client.receive, 100.0, 1 << 30, HeadLimits(), **rate)


class BodyMinimumRateTest(unittest.TestCase):
    """[timeouts] body_min_rate and body_grace: a body dribbled slower than the minimum
    gets 408 once the grace is over, however short each gap between its bytes."""

    def read_all(self, length: int, client: FakeClient, sink=None, **rate) -> int:
        """Read the body to its end, passing each piece to ``sink``; the bytes read."""
        with mock.patch("nex.http.body.time.monotonic", client.monotonic):
            reader = body_of(length, client, **rate)
            for piece in reader:
                if sink is not None:
                    sink(piece)
            return reader.received

    def test_a_body_dribbled_a_byte_a_second_gets_408_after_the_grace(self) -> None:
        client = FakeClient(b"x", 1.0)
        with self.assertRaises(HTTPError) as caught:
            self.read_all(100000, client, min_rate=500, grace=10.0)
        self.assertEqual((caught.exception.status, caught.exception.close), (408, True))
        self.assertEqual(client.now, 10.0)

    def test_without_a_minimum_only_each_gap_is_bounded(self) -> None:
        client = FakeClient(b"x", 1.0)
        self.assertEqual(self.read_all(100, client, min_rate=0, grace=10.0), 100)
        self.assertEqual(client.now, 100.0)

    def test_a_body_above_the_minimum_rate_is_read_whole(self) -> None:
        client = FakeClient(b"x" * 600, 1.0)
        self.assertEqual(self.read_all(50000, client, min_rate=500, grace=10.0), 50000)

    def test_a_fast_start_buys_no_stall_longer_than_its_bytes_allow(self) -> None:
        # 20,000 bytes in the first second cover 40 s at 500 B/s, and no more.
        client = FakeClient(b"x" * 20000, 1.0)
        with mock.patch("nex.http.body.time.monotonic", client.monotonic):
            reader = body_of(100000, client, min_rate=500, grace=10.0)
            reader.read()
            client.seconds = 60.0
            with self.assertRaises(HTTPError) as caught:
                reader.read()
        self.assertEqual(caught.exception.status, 408)
        self.assertEqual(client.now, 40.0)

    def test_time_the_handler_spends_elsewhere_does_not_count_against_the_client(self) -> None:
        client = FakeClient(b"x" * 1000, 1.0)

        def slow_disk(piece: bytes) -> None:
            client.now += 100.0

        self.assertEqual(self.read_all(10000, client, slow_disk, min_rate=500, grace=1.0),
                         10000)


class SlowBodyServerTest(unittest.TestCase):
    """The real server: a body that stalls after its first bytes gets 408 once the grace is
    over, long before the gap time-out (here 60 s) would end it."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp(prefix="nex-root-")
        with open(os.path.join(cls.root, "hello.txt"), "wb") as out:
            out.write(b"hello\n")
        cls.server = NexServer(cls.root, settings={
            "timeouts": {"request_head": 60, "body_min_rate": "1K", "body_grace": 1},
            "files": {"upload": "yes"}}).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def stalled(self, method: str, path: str) -> bytes:
        """The response to a body of which only the first 10 of 100,000 bytes come."""
        with self.server.connect() as sock:
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
                         f"Content-Length: 100000\r\n\r\n".encode() + b"x" * 10)
            return read_all(sock)

    def test_a_stalled_upload_gets_408_and_leaves_nothing(self) -> None:
        response = self.stalled("PUT", "/slow.txt")
        self.assertTrue(response.startswith(b"HTTP/1.1 408 "), response[:80])
        self.assertEqual(sorted(os.listdir(self.root)), ["hello.txt"])

    def test_a_stalled_body_nobody_reads_gets_408(self) -> None:
        response = self.stalled("GET", "/hello.txt")
        self.assertTrue(response.startswith(b"HTTP/1.1 408 "), response[:80])




class ClientResetInsideBodyTest(unittest.TestCase):
    """A client that resets inside a request body is not a server fault: no 500, no
    traceback, no temporary file left, every descriptor released, and one access line that
    says what was received."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-root-")
        self.addCleanup(shutil.rmtree, self.root, True)
        with open(os.path.join(self.root, "big.bin"), "wb") as out:
            out.write(os.urandom(8 * 1024 * 1024))  # past the small-file cache: a descriptor
        # Without the open-file cache, whose descriptors outlive a response on purpose (its
        # own release on a reset is tested in test_opencache).
        self.server = NexServer(self.root, settings={"files": {"upload": "yes",
                                                               "open_file_cache": "0"}})
        self.addCleanup(self.server.stop)
        self.server.start()

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.server.pid}/fd"))

    def assert_one_quiet_line_per_reset(self, request_line: str, count: int) -> None:
        log = self.server.wait_for_access_log(lambda text: text.count(request_line) >= count)
        lines = [line for line in log.splitlines() if request_line in line]
        self.assertEqual(len(lines), count, log)
        for line in lines:
            self.assertIn(f'"{request_line}" 400 - ', line)
            self.assertTrue(line.endswith(" received=10"), line)
        errors = self.server.error_log()
        self.assertNotIn("Traceback", errors)
        self.assertNotIn("fault", errors)

    def test_upload_reset_leaves_no_temporary_file(self) -> None:
        sock = self.server.connect()
        sock.sendall(b"PUT /new.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n"
                     + b"x" * 10)
        # The upload's temporary file appears once the body is being read.
        wait_until(lambda: len(os.listdir(self.root)) == 2, what="the temporary file")
        reset(sock)
        self.assert_one_quiet_line_per_reset("PUT /new.bin HTTP/1.1", 1)
        wait_until(lambda: os.listdir(self.root) == ["big.bin"],
                   what="the temporary file's removal")

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "counts descriptors through /proc")
    def test_resets_while_a_body_is_discarded_release_every_descriptor(self) -> None:
        baseline = self.descriptors()
        for _ in range(5):
            sock = self.server.connect()
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n"
                         b"Content-Length: 100000\r\n\r\n"
                         + b"x" * 10)
            # The connection's socket, and the file its response will send.
            wait_until(lambda: self.descriptors() >= baseline + 2, what="the response's file")
            reset(sock)
            wait_until(lambda: self.descriptors() <= baseline, what="every descriptor's release")
        self.assert_one_quiet_line_per_reset("GET /big.bin HTTP/1.1", 5)


class ProxiedBodyResetTest(ProxyTestCase):
    """The same for a body the forward proxy is passing on to an origin."""

    def test_reset_while_proxying_a_body_is_one_quiet_line(self) -> None:
        origin = self.origin(lambda exchange: ok())
        sock = self.server.connect()
        url = origin.url("/form")
        sock.sendall(f"POST {url} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n"
                     "Content-Length: 100000\r\n\r\n".encode() + b"x" * 10)
        # The head and the first bytes have reached the origin.
        wait_until(lambda: origin.raw and origin.raw[0].endswith(b"x" * 10),
                   what="the body's first bytes at the origin")
        reset(sock)
        line = f'"POST {url} HTTP/1.1" 400 - '
        log = self.log_has(line)
        [entry] = [text for text in log.splitlines() if line in text]
        self.assertTrue(entry.endswith(" received=10"), entry)
        errors = self.server.error_log()
        self.assertNotIn("Traceback", errors)
        self.assertNotIn("fault", errors)


class ClientGoneBeforeContinueTest(unittest.TestCase):
    """A client that leaves while Nex would tell it ``100 Continue`` is no server fault
    either: no 500, no traceback, no temporary file, one access line."""

    def test_a_client_gone_before_100_continue_is_one_quiet_line(self) -> None:
        root = temp_root(self, {})
        config = Config(document_root=root, error_pages=os.path.join(REPO, "error_pages"),
                        templates=os.path.join(REPO, "other_templates"), upload=True)
        log = capture_log(self)
        site = assemble(config, 0, on_error=log.logger.warning)
        server_end, client_end = socket.socketpair()
        with client_end:
            client_end.sendall(b"PUT /new.bin HTTP/1.1\r\nHost: localhost\r\n"
                               b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n")
        # The connection loop runs here: the head is read, the 100 finds nobody.
        Connection(server_end, "127.0.0.1", site, log.logger, threading.Event()).serve()
        errors, access = log.errors(), log.access()
        self.assertNotIn("Traceback", errors)
        self.assertNotIn("fault", errors)
        [line] = access.splitlines()
        self.assertIn('"PUT /new.bin HTTP/1.1" 400 - ', line)
        self.assertEqual(os.listdir(root), [])
