"""The forward proxy on the wire: requests in absolute-form through the real server to origins
the tests run on 127.0.0.1, with urllib, http.client and raw sockets as clients.

Security rules (admission, smuggling, hop-by-hop fields, loops) are in test_proxy_security,
CONNECT tunnels in test_proxy_tunnel.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import os
import random
import socket
import threading
import unittest
import urllib.request
from typing import Tuple
from unittest import mock

from tests.support import (SOCKET_TIMEOUT, Exchange, ProxyTestCase, ThenClose, free_port, ok,
                           parse_replies, proxy_settings, read_all, resources,
                           wait_for_resources)

TEN_MB = 10 * 1024 * 1024


def sha256_answer(exchange: Exchange) -> bytes:
    """An origin's answer: the SHA-256 of the body it received, in hex."""
    return ok(hashlib.sha256(exchange.body).hexdigest().encode("ascii"))


def split_chunked(body: bytes) -> Tuple[bytes, bytes]:
    """``(decoded data, bytes after the body)`` of a chunked body, checked strictly."""
    data = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            if not body.startswith(b"\r\n"):
                raise AssertionError(body[:20])
            return b"".join(data), body[2:]
        data.append(body[:size])
        if body[size:size + 2] != b"\r\n":
            raise AssertionError("no CRLF after a chunk")
        body = body[size + 2:]


class ClientsTest(ProxyTestCase):
    def test_urllib_through_a_proxy_handler(self) -> None:
        origin = self.origin(lambda exchange: ok(b"through urllib", "Content-Type: text/plain"))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": self.server.url}))
        with mock.patch.dict(os.environ, {"no_proxy": "", "NO_PROXY": ""}):
            with opener.open(origin.url("/page?q=1"), timeout=SOCKET_TIMEOUT) as reply:
                self.assertEqual(reply.status, 200)
                self.assertEqual(reply.read(), b"through urllib")
                self.assertRegex(reply.headers["Via"], r"^1\.1 nex-[0-9a-f]{16}$")
        exchange, = origin.received
        self.assertEqual(exchange.target, "/page?q=1")
        self.assertEqual(exchange.values("Host"), [f"127.0.0.1:{origin.port}"])
        self.log_has(f'"GET http://127.0.0.1:{origin.port}/page?q=1 HTTP/1.1" 200 14 ')

    def test_keep_alive_on_both_sides(self) -> None:
        origin = self.origin(lambda exchange: ok(exchange.target.encode()))
        connection = self.connection()
        sockets = set()
        for path in ("/one", "/two", "/three"):
            connection.request("GET", origin.url(path))
            response = connection.getresponse()
            self.assertEqual(response.read(), path.encode())
            self.assertFalse(response.will_close)
            sockets.add(id(connection.sock))
        self.assertEqual(len(sockets), 1)  # one client connection carried all three
        self.assertEqual(origin.connections, 1)  # ... and one pooled origin connection

    def test_http10_client_gets_a_close_delimited_body_from_a_chunked_origin(self) -> None:
        origin = self.origin(lambda exchange: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                                              b"\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        data = self.raw(b"GET %s HTTP/1.0\r\n\r\n" % origin.url("/").encode())
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertNotIn(b"Content-Length", head)
        self.assertIn(b"Connection: close", head)
        self.assertEqual(body, b"hello world")


class FramingTest(ProxyTestCase):
    def test_chunked_origin_response_is_chunked_to_the_client(self) -> None:
        origin = self.origin(lambda exchange: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                                              b"\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n"
                                              b"6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
        url = origin.url("/").encode()
        data = self.raw(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\nGET %s HTTP/1.1\r\nHost: a\r\n"
                        b"Connection: close\r\n\r\n" % (url, url))
        for _ in range(2):  # both answers, one after the other on the connection
            head, _, data = data.partition(b"\r\n\r\n")
            self.assertIn(b"\r\nTransfer-Encoding: chunked", head)
            body, data = split_chunked(data)
            self.assertEqual(body, b"hello world")
        self.assertEqual(data, b"")

    def test_close_delimited_origin_response(self) -> None:
        origin = self.origin(lambda exchange: ThenClose(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the origin closes"))
        response, body = self.fetch("GET", origin.url("/"))
        self.assertEqual(body, b"until the origin closes")
        self.assertEqual(response.getheader("Transfer-Encoding"), "chunked")
        # HTTP/1.1 client: chunked, so the client's connection could stay open.
        self.assertFalse(response.will_close)

    def test_head_and_304_keep_the_origin_length_and_send_no_body(self) -> None:
        def answer(exchange: Exchange) -> bytes:
            if exchange.method == "HEAD":
                return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"a\"\r\n\r\n"
            if exchange.values("If-None-Match"):
                return b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\nContent-Length: 1234\r\n\r\n"
            return ok(b"x" * 1234, 'ETag: "a"')
        origin = self.origin(answer)
        url = origin.url("/r").encode()
        with self.server.connect() as sock:
            sock.sendall(b"HEAD %s HTTP/1.1\r\nHost: a\r\n\r\n" % url)
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"a\"\r\n\r\n" % url)
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % url)
            data = read_all(sock)
        head = data[:data.index(b"\r\n\r\n") + 4]
        self.assertIn(b"\r\nContent-Length: 1234\r\n", head)
        replies = parse_replies(data[len(head):])  # a body after HEAD would break these
        self.assertEqual([reply.status for reply in replies], [304, 200])
        self.assertEqual(replies[0].headers["content-length"], "1234")
        self.assertEqual(replies[0].body, b"")
        self.assertEqual(replies[1].body, b"x" * 1234)

    def test_origin_status_reason_and_date_pass_through(self) -> None:
        origin = self.origin(lambda exchange: b"HTTP/1.1 599 Origin Special\r\n"
                                              b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
                                              b"Server: origin/1\r\nContent-Length: 2\r\n\r\nok")
        data = self.raw(b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                        % origin.url("/").encode())
        self.assertTrue(data.startswith(b"HTTP/1.1 599 Origin Special\r\n"))
        head = data.split(b"\r\n\r\n")[0]
        self.assertEqual(head.count(b"Date:"), 1)
        self.assertIn(b"Date: Mon, 01 Jan 2024 00:00:00 GMT", head)
        self.assertIn(b"Server: origin/1", head)
        self.assertNotIn(b"Nex/", head)

    def test_a_response_without_date_gets_one(self) -> None:
        # RFC 9110 §6.6.1: a proxy with a clock forwarding a response without Date appends
        # one; no Server of Nex's own is added.
        origin = self.origin(lambda exchange: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        data = self.raw(b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                        % origin.url("/").encode())
        head = data.split(b"\r\n\r\n")[0]
        self.assertEqual(head.count(b"\r\nDate: "), 1)
        self.assertRegex(head, rb"\r\nDate: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT")
        self.assertNotIn(b"Nex/", head)


class LargeBodiesTest(ProxyTestCase):
    def test_ten_megabytes_up_with_content_length(self) -> None:
        origin = self.origin(sha256_answer)
        data = random.Random(1).randbytes(TEN_MB)
        response, body = self.fetch("POST", origin.url("/upload"), body=data)
        self.assertEqual(body.decode(), hashlib.sha256(data).hexdigest())
        exchange, = origin.received
        self.assertEqual(exchange.values("Content-Length"), [str(TEN_MB)])

    def test_ten_megabytes_up_chunked(self) -> None:
        origin = self.origin(sha256_answer)
        data = random.Random(2).randbytes(TEN_MB)
        pieces = (data[start:start + 100_000] for start in range(0, len(data), 100_000))
        response, body = self.fetch("POST", origin.url("/upload"), body=pieces,
                                    encode_chunked=True)
        self.assertEqual(body.decode(), hashlib.sha256(data).hexdigest())
        exchange, = origin.received
        self.assertEqual(exchange.values("Transfer-Encoding"), ["chunked"])
        self.assertEqual(exchange.values("Content-Length"), [])

    def test_ten_megabytes_down(self) -> None:
        data = random.Random(3).randbytes(TEN_MB)
        origin = self.origin(lambda exchange: ok(data))
        response, body = self.fetch("GET", origin.url("/big"))
        self.assertEqual(response.getheader("Content-Length"), str(TEN_MB))
        self.assertEqual(hashlib.sha256(body).digest(), hashlib.sha256(data).digest())

    def test_expect_100_continue_through_the_proxy(self) -> None:
        origin = self.origin(sha256_answer)
        with self.server.connect() as sock:
            sock.sendall(b"PUT %s HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
                         b"Expect: 100-continue\r\n\r\n" % origin.url("/x").encode())
            interim = b""
            while b"\r\n\r\n" not in interim:
                interim += sock.recv(1)
            self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(b"hello world")
            reply = parse_replies(self.read_one(sock))[0]
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body.decode(), hashlib.sha256(b"hello world").hexdigest())
        exchange, = origin.received
        self.assertEqual(exchange.body, b"hello world")
        self.assertEqual(exchange.values("Expect"), [])

    def read_one(self, sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head = data[:data.index(b"\r\n\r\n")]
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        while len(data) < len(head) + 4 + length:
            data += sock.recv(65536)
        return data


class OriginFailureTest(ProxyTestCase):
    settings = proxy_settings(upstream_timeout=1)

    def test_refused_origin_is_502(self) -> None:
        response, body = self.fetch("GET", f"http://127.0.0.1:{free_port()}/")
        self.assertEqual(response.status, 502)
        self.assertTrue(body.startswith(b"502 Bad Gateway: "), body)

    def test_silent_origin_is_504(self) -> None:
        release = threading.Event()

        def never_answer(exchange: Exchange) -> None:
            release.wait(SOCKET_TIMEOUT)
        origin = self.origin(never_answer)
        self.addCleanup(release.set)  # cleanups run last first: before the origin closes
        response, _ = self.fetch("GET", origin.url("/"))
        self.assertEqual(response.status, 504)

    def test_unresolvable_name_is_502(self) -> None:
        response, _ = self.fetch("GET", "http://nothing.invalid/")
        self.assertEqual(response.status, 502)

    def test_https_target_is_400_asking_for_connect(self) -> None:
        response, body = self.fetch("GET", "https://127.0.0.1:1/")
        self.assertEqual(response.status, 400)
        self.assertIn(b"CONNECT", body)

    def test_body_broken_off_closes_the_client_connection_without_a_traceback(self) -> None:
        origin = self.origin(lambda exchange: ThenClose(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"))
        data = self.raw(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % origin.url("/").encode())
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: 100", head)
        self.assertEqual(body, b"only ten b")  # cut off: the connection closed
        log = self.server.wait_for_access_log(lambda text: "only" in text or " 200 10 " in text)
        self.assertIn(f'"GET {origin.url("/")} HTTP/1.1" 200 10 ', log)
        error_log = self.server.error_log()
        self.assertEqual(error_log.count("cut short"), 1, error_log)
        self.assertNotIn("Traceback", error_log)

    def test_closed_pooled_connection_is_retried_once_for_a_request_without_body(self) -> None:
        # The origin closes every connection at its second request without answering, as
        # one whose keep-alive time ran out just then would.
        origin = self.origin(lambda exchange: ok(b"fresh") if exchange.index == 0 else None)
        connection = self.connection()
        for _ in range(2):
            connection.request("GET", origin.url("/"))
            self.assertEqual(connection.getresponse().read(), b"fresh")
        self.assertEqual(origin.connections, 2)
        self.assertEqual(len(origin.received), 3)

    def test_non_idempotent_request_is_never_sent_twice(self) -> None:
        # RFC 9112 §9.3.1: a proxy MUST NOT retry a non-idempotent request on its own, even
        # one whose (empty) body could be sent again.
        origin = self.origin(lambda exchange: ok(b"fresh") if exchange.index == 0 else None)
        connection = self.connection()
        connection.request("GET", origin.url("/"))
        self.assertEqual(connection.getresponse().read(), b"fresh")
        connection.request("POST", origin.url("/"))
        self.assertEqual(connection.getresponse().status, 502)
        self.assertEqual((origin.connections, len(origin.received)), (1, 2))

    def test_idempotent_request_with_an_empty_body_is_retried_once(self) -> None:
        origin = self.origin(lambda exchange: ok(b"fresh") if exchange.index != 1 else None)
        connection = self.connection()
        connection.request("GET", origin.url("/"))
        self.assertEqual(connection.getresponse().read(), b"fresh")
        connection.request("DELETE", origin.url("/"), headers={"Content-Length": "0"})
        self.assertEqual(connection.getresponse().read(), b"fresh")
        self.assertEqual((origin.connections, len(origin.received)), (2, 3))

    def test_closed_pooled_connection_is_not_retried_once_the_body_was_sent(self) -> None:
        origin = self.origin(lambda exchange: ok(b"fresh") if exchange.index == 0 else None)
        connection = self.connection()
        connection.request("GET", origin.url("/"))
        self.assertEqual(connection.getresponse().read(), b"fresh")
        connection.request("POST", origin.url("/"), body=b"sent once")
        self.assertEqual(connection.getresponse().status, 502)
        self.assertEqual(origin.connections, 1)


class ManyClientsTest(ProxyTestCase):
    settings = {**proxy_settings(),
                "server": {"max_connections_per_client": 512, "max_connections": 1024}}

    def test_200_concurrent_downloads_are_byte_exact(self) -> None:
        bodies = {f"/{number}": random.Random(number).randbytes(100_000 + number)
                  for number in range(200)}
        origin = self.origin(lambda exchange: ok(bodies[exchange.target]))
        start = threading.Barrier(200, timeout=SOCKET_TIMEOUT)

        def download(path: str) -> bool:
            connection = http.client.HTTPConnection(self.server.host, self.server.port,
                                                    timeout=SOCKET_TIMEOUT)
            try:
                connection.connect()
                start.wait()
                connection.request("GET", origin.url(path))
                response = connection.getresponse()
                return response.status == 200 and response.read() == bodies[path]
            finally:
                connection.close()
        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            results = list(pool.map(download, bodies))
        self.assertEqual(results.count(True), 200)

    def test_client_leaving_mid_download_leaves_no_thread_or_descriptor(self) -> None:
        big = b"z" * (64 * 1024 * 1024)
        origin = self.origin(lambda exchange: ok(big))
        baseline = wait_for_resources(self.server.pid, resources(self.server.pid))
        with self.server.connect() as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % origin.url("/big").encode())
            received = 0
            while received < 1024 * 1024:
                received += len(sock.recv(65536))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        now = wait_for_resources(self.server.pid, baseline)
        self.assertLessEqual(now["threads"], baseline["threads"])
        self.assertLessEqual(now["descriptors"], baseline["descriptors"])
        self.assertNotIn("Traceback", self.server.error_log())


class WorkersTest(ProxyTestCase):
    settings = {**proxy_settings(), "server": {"workers": 2}}

    def test_each_worker_forwards(self) -> None:
        origin = self.origin(lambda exchange: ok(exchange.values("Via")[0].encode()))
        pseudonyms = set()
        for _ in range(20):
            response, body = self.fetch("GET", origin.url("/"))
            self.assertEqual(response.status, 200)
            pseudonyms.add(body)
        self.assertTrue(pseudonyms)
        self.assertTrue(all(via.startswith(b"1.1 nex-") for via in pseudonyms))


class ProxyOffTest(ProxyTestCase):
    """With the proxy off, absolute-form and CONNECT behave as they always have."""

    settings = {"server": {"allowed_hosts": "localhost, elsewhere.test"}}

    def test_absolute_form_is_served_from_the_files_with_the_host_check(self) -> None:
        response, body = self.fetch("GET", "http://elsewhere.test/hello.txt")
        self.assertEqual((response.status, body), (200, b"hello, world\n"))
        response, _ = self.fetch("GET", "http://other.test/hello.txt")
        self.assertEqual(response.status, 403)

    def test_connect_is_405(self) -> None:
        data = self.raw(b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n"
                        b"Connection: close\r\n\r\n")
        reply, = parse_replies(data)
        self.assertEqual(reply.status, 405)
        self.assertEqual(reply.headers["allow"], "GET, HEAD, OPTIONS")


if __name__ == "__main__":
    unittest.main()
