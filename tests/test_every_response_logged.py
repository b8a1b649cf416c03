"""Responses that end early still leave exactly one trace, and stopping says what it waits for.

Real server, real sockets: a download the client aborts, a file that shrinks while it is
sent, a transfer cut by the end of the shutdown grace period (a second Ctrl+C is in
test_signals).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import tempfile
import unittest

from tests.support import (LARGE, NexServer, ResponseReader, large_root, read_all,
                           stalled_download, wait_until)
from tests.support import reset, temp_root

ACCESS_LINE = re.compile(r'(?P<client>\S+) - - \[[^\]]+\] "(?P<request>[^"]*)" '
                         r'(?P<status>\d{3}) (?P<size>\d+|-) "[^"]*" "[^"]*" \d+')


class EarlyEndTest(unittest.TestCase):
    def setUp(self):
        self.root = large_root(self)

    def lines(self, server: NexServer, request: str):
        log = server.wait_for_access_log(lambda text: request in text)
        return [ACCESS_LINE.fullmatch(line) for line in log.splitlines() if request in line]

    def test_an_aborted_download_is_logged_with_the_bytes_sent(self):
        with NexServer(self.root) as server:
            sock = server.connect()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"GET /large.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            received = 0
            while received < 1024 * 1024:
                received += len(sock.recv(65536))
            reset(sock)  # the client is gone
            [line] = self.lines(server, "GET /large.bin")
            self.assertIsNotNone(line)
            self.assertEqual(line.group("status"), "200")
            sent = int(line.group("size"))
            self.assertGreater(sent, 0)
            self.assertLess(sent, LARGE)
            self.assertEqual(server.error_log(), "", "a client that left is no server error")

    def test_a_file_that_shrinks_while_sent_gets_one_error_line_and_a_short_count(self):
        with NexServer(self.root) as server:
            with server.connect() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                sock.sendall(b"GET /large.bin HTTP/1.1\r\nHost: a\r\n\r\n")
                first = sock.recv(65536)
                self.assertTrue(first.startswith(b"HTTP/1.1 200 "))
                os.truncate(os.path.join(self.root, "large.bin"), 2 * 1024 * 1024)
                received = len(first) + len(read_all(sock))
            [line] = self.lines(server, "GET /large.bin")
            self.assertLess(int(line.group("size")), LARGE)
            self.assertTrue(wait_until(lambda: "cut short" in server.error_log()))
            errors = server.error_log()
            self.assertEqual(errors.count("cut short"), 1, errors)
            self.assertIn("shrank", errors)
            self.assertNotIn("Traceback", errors)
            self.assertLess(received, LARGE)

    def test_a_transfer_cut_by_shutdown_is_logged(self):
        server, _ = stalled_download(self, self.root, {"timeouts": {"shutdown_grace": "1"}})
        server.signal(signal.SIGTERM)  # and the client never reads on
        self.assertEqual(server.wait(), 0)
        lines = [line for line in server.access_log().splitlines() if "GET /large.bin" in line]
        self.assertEqual(len(lines), 1, server.access_log())
        size = ACCESS_LINE.fullmatch(lines[0]).group("size")
        self.assertLess(0 if size == "-" else int(size), LARGE)
        self.assertIn("waiting up to 1 s for 1 transfer; Ctrl+C again to stop now",
                      server.stderr())


class TrustedProxyCapTest(unittest.TestCase):
    """A load balancer carries many clients: the per-client cap is not for it."""

    def setUp(self):
        self.root = temp_root(self, {"a.txt": b"a"})

    def open_connections(self, server: NexServer, count: int):
        socks = []
        for _ in range(count):
            sock = server.connect()
            self.addCleanup(sock.close)
            sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            socks.append(sock)
        return [ResponseReader(sock).read()[0] for sock in socks]

    def test_cap_applies_to_ordinary_clients(self):
        with NexServer(self.root, settings={
                "server": {"max_connections_per_client": "3"}}) as server:
            self.assertEqual(self.open_connections(server, 4), [200, 200, 200, 429])

    def test_cap_does_not_apply_to_trusted_proxies(self):
        with NexServer(self.root, settings={
                "server": {"max_connections_per_client": "3"},
                "logging": {"trusted_proxies": "127.0.0.1"}}) as server:
            self.assertEqual(self.open_connections(server, 6), [200] * 6)


class WildcardBindTest(unittest.TestCase):
    def test_a_wildcard_address_is_shown_as_reachable_urls(self):
        root = tempfile.mkdtemp(prefix="nex-bind-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        with NexServer(root, bind="0.0.0.0") as server:
            out = server.stdout()
            self.assertNotIn("0.0.0.0", out)
            self.assertIn(f"at http://127.0.0.1:{server.port}/ (Ctrl+C stops)", out)


if __name__ == "__main__":
    unittest.main()
