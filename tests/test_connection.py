"""Functional tests of the connection loop against the real server over raw sockets."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import tempfile
import unittest

from tests.support import NexServer, ResponseReader, exchange


def make_site(root: str) -> None:
    """A small document root shared by these tests."""
    os.makedirs(os.path.join(root, "docs"))
    with open(os.path.join(root, "hello.txt"), "wb") as f:
        f.write(b"hello, world\n")
    with open(os.path.join(root, "docs", "a.html"), "wb") as f:
        f.write(b"<p>a</p>")
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 17))


class ConnectionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="nex-root-")
        make_site(cls.root)
        cls.server = NexServer(cls.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def request(self, raw: bytes):
        with self.server.connect() as sock:
            sock.sendall(raw)
            return ResponseReader(sock).read()

    def test_get_file(self):
        status, headers, body = self.request(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"hello, world\n")
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(headers["content-length"], "13")
        self.assertIn("date", headers)
        self.assertTrue(headers["server"].startswith("Nex/"))
        self.assertIn("last-modified", headers)

    def test_two_requests_on_one_connection(self):
        with self.server.connect() as sock:
            reader = ResponseReader(sock)
            for _ in range(2):
                sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
                status, headers, body = reader.read()
                self.assertEqual((status, body), (200, b"hello, world\n"))
                self.assertEqual(headers["connection"], "keep-alive")

    def test_three_pipelined_requests_in_one_write_are_answered_in_order(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET /docs/a.html HTTP/1.1\r\nHost: a\r\n\r\n")
            reader = ResponseReader(sock)
            results = [reader.read() for _ in range(3)]
        self.assertEqual([r[0] for r in results], [200, 404, 200])
        self.assertEqual(results[0][2], b"hello, world\n")
        self.assertEqual(results[2][2], b"<p>a</p>")

    def test_head_sends_exactly_the_headers_of_get(self):
        with self.server.connect() as sock:
            reader = ResponseReader(sock)
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            get_status, get_headers, body = reader.read()
            sock.sendall(b"HEAD /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            head_status, head_headers, _ = reader.read(head_only=True)
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual(reader.read()[2], b"hello, world\n")  # no stray body bytes
        get_headers.pop("date"), head_headers.pop("date")
        self.assertEqual((get_status, get_headers), (head_status, head_headers))
        with open(os.path.join(self.root, "big.bin"), "rb") as f:
            self.assertEqual(body, f.read())

    def test_http10_closes_unless_keep_alive_was_asked_for(self):
        with self.server.connect() as sock:
            data = exchange(sock, b"GET /hello.txt HTTP/1.0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "))
        self.assertIn(b"Connection: close\r\n", data)
        with self.server.connect() as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, _ = ResponseReader(sock).read()
            self.assertEqual(headers["connection"], "keep-alive")
            sock.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
            self.assertEqual(ResponseReader(sock).read()[0], 200)

    def test_connection_close_is_honoured(self):
        with self.server.connect() as sock:
            data = exchange(sock, b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n"
                                  b"Connection: close\r\n\r\nGET /hello.txt HTTP/1.1\r\n\r\n")
        self.assertEqual(data.count(b"HTTP/1.1 200"), 1)
        self.assertIn(b"Connection: close\r\n", data)

    def test_request_body_is_discarded_before_the_next_request(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 23\r\n\r\n"
                         b"GET /nothere HTTP/1.1\r\n"
                         b"GET /docs/a.html HTTP/1.1\r\nHost: a\r\n\r\n")
            reader = ResponseReader(sock)
            self.assertEqual(reader.read()[2], b"hello, world\n")
            self.assertEqual(reader.read()[2], b"<p>a</p>")

    def test_chunked_request_body_is_discarded(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                         b"\r\n5\r\nhello\r\n0\r\n\r\nGET /docs/a.html HTTP/1.1\r\nHost: a\r\n\r\n")
            reader = ResponseReader(sock)
            self.assertEqual(reader.read()[2], b"hello, world\n")
            self.assertEqual(reader.read()[2], b"<p>a</p>")

    def test_post_is_refused_with_allow_and_closes(self):
        with self.server.connect() as sock:
            data = exchange(sock, b"POST /hello.txt HTTP/1.1\r\nHost: localhost\r\n"
                                  b"Content-Length: 5\r\n\r\nhello")
        self.assertTrue(data.startswith(b"HTTP/1.1 405 "))
        self.assertIn(b"Allow: GET, HEAD, OPTIONS\r\n", data)

    def test_options(self):
        for target in (b"*", b"/hello.txt", b"/docs/"):
            status, headers, _ = self.request(b"OPTIONS " + target
                                              + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual(status, 204)
            self.assertEqual(headers["allow"], "GET, HEAD, OPTIONS")

    def test_directory_without_slash_redirects(self):
        status, headers, body = self.request(b"GET /docs?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(status, 301)
        self.assertEqual(headers["location"], "/docs/?x=1")
        self.assertEqual(body, b"301 Moved Permanently: /docs/?x=1\n")

    def test_http_client_peer(self):
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
        try:
            for _ in range(3):
                conn.request("GET", "/docs/")
                response = conn.getresponse()
                page = response.read()
                self.assertEqual(response.status, 200)
                self.assertIn(b"a.html", page)
        finally:
            conn.close()

    def test_access_log_has_combined_format_lines(self):
        self.request(b"GET /hello.txt?q=1 HTTP/1.1\r\nHost: a\r\nReferer: http://r/\r\n"
                     b"User-Agent: tester/1.0\r\n\r\n")
        expected = '"GET /hello.txt?q=1 HTTP/1.1" 200 13 "http://r/" "tester/1.0"'
        lines = self.server.wait_for_access_log(lambda text: expected in text).splitlines()
        self.assertTrue(any(re.search(re.escape(expected) + r" [0-9]+$", line)
                            for line in lines), lines)


if __name__ == "__main__":
    unittest.main()
