"""The origin side: response heads, framing, bodies, time-outs and pooling, against small
origin servers the tests run on 127.0.0.1 with plain sockets."""

from __future__ import annotations

import random
import socket
import threading
import unittest
from typing import Callable, List, Optional, Tuple

from nex.http.body import NO_LIMIT, ChunkedBody
from nex.http.errors import HTTPError
from nex.http.framing import NO_BODY, HeadLimits
from nex.proxy.upstream import (CHUNKED, LENGTH, MAX_PIECE, UNTIL_CLOSE, Origin,
                          OriginBodyError, OriginPool, StaleConnection, connect, interleave,
                          parse_response_head)
from nex.proxy.figures import ORIGINS_OPENED, ORIGINS_REUSED, new_tally
from nex.proxy.forwarding import Relayed
from tests.support import ThreadedOrigin, free_port
from tests.support.fakes import FakeClock
from tests.support.threads import run_in_threads

SOCKET_TIMEOUT = 30.0
#: Short enough that the time-out tests finish quickly, far longer than loopback needs.
SHORT = 0.5


class Peer:
    """The origin's end of one connection, reading request heads off a buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read_head(self) -> Optional[bytes]:
        """The next request head, or None when the proxy closed the connection."""
        while b"\r\n\r\n" not in self.buffer:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class OriginServer(ThreadedOrigin):
    """Accepts connections on 127.0.0.1 and runs ``handler(peer)`` for each in a thread."""

    def __init__(self, handler: Callable[[Peer], None]) -> None:
        self.handler = handler
        self.accepted = 0
        self.requests: List[bytes] = []
        super().__init__()

    @property
    def addresses(self) -> List[Tuple[int, tuple]]:
        return [(socket.AF_INET, ("127.0.0.1", self.port))]

    def register(self, sock: socket.socket) -> tuple:
        self.accepted += 1
        sock.settimeout(SOCKET_TIMEOUT)
        return (sock,)

    def serve(self, sock: socket.socket) -> None:
        with sock:
            try:
                self.handler(Peer(sock))
            except OSError:
                pass


def answer_once(response: bytes, then_close: bool = True) -> Callable[[Peer], None]:
    """A handler that reads one request and sends ``response``."""
    def handler(peer: Peer) -> None:
        if peer.read_head() is not None:
            peer.send(response)
            if not then_close:
                peer.read_head()  # wait until the proxy closes
    return handler


def keep_alive(responses: Callable[[bytes], bytes]) -> Callable[[Peer], None]:
    """A handler answering every request on the connection with ``responses(head)``."""
    def handler(peer: Peer) -> None:
        while True:
            head = peer.read_head()
            if head is None:
                return
            peer.send(responses(head))
    return handler


def ok(body: bytes = b"hello") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class UpstreamTestCase(unittest.TestCase):
    def serve(self, handler: Callable[[Peer], None]) -> OriginServer:
        server = OriginServer(handler)
        self.addCleanup(server.close)
        return server

    def open(self, server: OriginServer, timeout: float = SOCKET_TIMEOUT) -> Origin:
        origin = connect(("origin.test", server.port), server.addresses, SOCKET_TIMEOUT,
                         timeout)
        self.addCleanup(origin.close)
        return origin

    def exchange(self, server: OriginServer, method: str = "GET",
                 timeout: float = SOCKET_TIMEOUT) -> Tuple[Origin, object, bytes]:
        origin = self.open(server, timeout)
        origin.send(f"{method} / HTTP/1.1\r\nHost: origin.test\r\n\r\n".encode())
        head = origin.read_head(method)
        return origin, head, b"".join(origin.read_body(head))

    def assert_head_fails(self, origin: Origin, status: int, failure: str,
                          upgrade: bool = False) -> HTTPError:
        """Send a GET to ``origin`` and check that reading the head of its answer fails with
        ``status`` and ``failure``; the error."""
        origin.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        with self.assertRaises(HTTPError) as caught:
            origin.read_head("GET", upgrade=upgrade)
        self.assertEqual((caught.exception.status, caught.exception.failure), (status, failure))
        return caught.exception


def head_of(text: bytes, method: str = "GET", limits: HeadLimits = HeadLimits()):
    return parse_response_head(text, method, limits)


class ParseResponseHeadTest(unittest.TestCase):
    def test_remembered_heads_are_the_same_for_the_same_method_and_limits_only(self) -> None:
        text = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Filler: abcdefgh\r\n\r\n"
        first = head_of(text)
        self.assertIs(head_of(bytearray(text)), first)
        self.assertEqual(head_of(text, "HEAD").framing, NO_BODY)  # the method counts
        with self.assertRaises(HTTPError) as caught:  # and so do the limits
            head_of(text, limits=HeadLimits(header_count=1))
        self.assertEqual(caught.exception.status, 502)

    def test_fields_and_framing(self) -> None:
        for text, method, framing, length, keep in (
                (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET", LENGTH, 5, True),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "GET", LENGTH, 5, True),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", LENGTH, 0, True),
                (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", CHUNKED,
                 None, True),
                (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", "GET", CHUNKED,
                 None, True),
                (b"HTTP/1.1 200 OK\r\n\r\n", "GET", UNTIL_CLOSE, None, False),
                (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", "GET", LENGTH, 5, False),
                (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\n",
                 "GET", LENGTH, 5, True),
                (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n", "GET",
                 LENGTH, 5, False),
                (b"HTTP/1.1 200 OK\r\nConnection: x, CLOSE\r\nContent-Length: 5\r\n\r\n",
                 "GET", LENGTH, 5, False),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "HEAD", NO_BODY, 1000,
                 True),
                (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", NO_BODY,
                 None, True),
                (b"HTTP/1.1 204 No Content\r\n\r\n", "GET", NO_BODY, None, True),
                (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", NO_BODY,
                 10, True),
                (b"HTTP/1.1 100 Continue\r\n\r\n", "POST", NO_BODY, None, True),
                (b"HTTP/1.1 404 \r\nContent-Length: 1\r\n\r\n", "GET", LENGTH, 1, True),
                (b"HTTP/1.1 404\r\nContent-Length: 1\r\n\r\n", "GET", LENGTH, 1, True),
                (b"HTTP/1.2 599 Whatever \xe9\t!\r\nContent-Length: 1\r\n\r\n", "GET",
                 LENGTH, 1, True)):
            with self.subTest(text=text, method=method):
                head = head_of(text, method)
                self.assertEqual((head.framing, head.content_length, head.keep_alive),
                                 (framing, length, keep))

    def test_parts(self) -> None:
        head = head_of(b"HTTP/1.0 404 Not  Found\r\nX-A: 1\r\nx-a:  2 \r\nContent-Length: 0"
                       b"\r\n\r\n")
        self.assertEqual((head.version, head.status, head.reason), ("HTTP/1.0", 404,
                                                                    "Not  Found"))
        self.assertEqual(head.headers.get_all("X-A"), ["1", "2"])

    def test_relayed_fields_come_with_the_head(self) -> None:
        head = head_of(b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nX-A: 1\r\n"
                       b"Content-Length: 0\r\n\r\n")
        self.assertEqual(head.relayed, Relayed("X-A: 1\r\n", False))
        dated = head_of(b"HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
                        b"Content-Length: 0\r\n\r\n")
        self.assertEqual(dated.relayed, Relayed("date: Mon, 01 Jan 2024 00:00:00 GMT\r\n", True))

    def test_malformed_heads_are_502(self) -> None:
        many = b"".join(b"X-%d: 1\r\n" % index for index in range(101))
        for text in (
                b"HTTP/1.1 200OK\r\n\r\n", b"HTTP/2 200 OK\r\n\r\n", b"HTTP/2.0 200 OK\r\n\r\n",
                b"HTTP/1.1 99 Low\r\n\r\n", b"HTTP/1.1 600 High\r\n\r\n",
                b"HTTP/1.1 2000 Long\r\n\r\n", b"http/1.1 200 OK\r\n\r\n",
                b" HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1  200 OK\r\n\r\n",
                b"\r\nHTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nX: 1\r\n continued\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nX : 1\r\n\r\n", b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n\n", b"HTTP/1.1 200 OK\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n" + many + b"\r\n",
                b"HTTP/1.1 200 " + b"x" * 8200 + b"\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70000 + b"\r\n\r\n"):
            with self.subTest(text=text[:80]), self.assertRaises(HTTPError) as caught:
                head_of(text)
            self.assertEqual((caught.exception.status, caught.exception.failure),
                             (502, "bad_response"))


    def test_a_bare_cr_or_lf_is_the_reason_whatever_else_is_wrong(self) -> None:
        for text in (b"HTTP/1.1 2\r0 OK\r\n\r\n", b"HTTP/9 200\r\nX: a\nb\r\n\r\n",
                     b"HTTP/1.1 200 OK\r\nX: a\rb\r\nBad Name: 1\r\n\r\n",
                     b"HTTP/1.1 200 OK\r\nX : \n\r\n\r\n"):
            with self.subTest(text=text), self.assertRaises(HTTPError) as caught:
                head_of(text)
            self.assertEqual(caught.exception.detail, "The origin server sent a malformed "
                             "response head (bare CR or LF in response head).")


CHUNKED_BODY = (b"5\r\nhello\r\n1;name=value\r\n \r\n6 ; q=\"a b\"\r\nworld!\r\n"
                b"0\r\nX-Trailer: yes\r\n\r\n")


#: Chunked framings an origin may not send, each cut short of a valid body.
BAD_CHUNKED = (b"5\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n",
               b"5\r\nhello\r0\r\n\r\n", b"g\r\n", b"-1\r\n", b" 5\r\nhello\r\n",
               b"12345678901234567\r\n", b"5;" + b"e" * 40 + b"\r\n",
               b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", b"0\r\nbad trailer\r\n\r\n",
               b"0\r\nX: " + b"y" * 100 + b"\r\n\r\n", b"0\r\n\n")
SMALL_LIMITS = HeadLimits(request_line=16, header_block=64, header_count=2)


class ChunkedDataTest(unittest.TestCase):
    """The shared chunked decoder as the origin side uses it: chunk data handed to a sink."""

    def decode(self, stream: bytes, cuts: List[int], limits: HeadLimits = HeadLimits()) -> Tuple[
            bytes, int]:
        decoder = ChunkedBody(NO_LIMIT, limits)
        pieces: List[bytes] = []
        consumed, buffered, offset = 0, bytearray(), 0
        for size in cuts + [len(stream)]:
            buffered += stream[offset:offset + size]
            offset += size
            taken = decoder.feed(buffered, lambda data: pieces.append(bytes(data)))
            consumed += taken
            del buffered[:taken]
            if decoder.done:
                break
        self.assertTrue(decoder.done)
        return b"".join(pieces), consumed

    def test_data_in_any_cuts(self) -> None:
        stream = CHUNKED_BODY + b"NEXT"
        rng = random.Random(7)
        cuts = [[], [1] * len(stream)] + [[rng.randint(1, 9) for _ in range(20)]
                                          for _ in range(5)]
        for pieces in cuts:
            with self.subTest(pieces=pieces):
                self.assertEqual(self.decode(stream, pieces),
                                 (b"hello world!", len(CHUNKED_BODY)))

    def test_large_chunk(self) -> None:
        payload = bytes(range(256)) * 1000
        stream = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
        self.assertEqual(self.decode(stream, [MAX_PIECE] * 5)[0], payload)

    def test_violations(self) -> None:
        for stream in BAD_CHUNKED:
            with self.subTest(stream=stream[:40]), self.assertRaises(HTTPError):
                ChunkedBody(NO_LIMIT, SMALL_LIMITS).feed(stream, lambda data: None)


class ResponseOverSocketTest(UpstreamTestCase):
    def test_content_length_body(self) -> None:
        origin, head, body = self.exchange(self.serve(answer_once(ok(b"x" * 10), False)))
        self.assertEqual((head.status, body), (200, b"x" * 10))
        self.assertTrue(origin.reusable)

    def test_large_body_comes_in_bounded_pieces(self) -> None:
        payload = random.Random(1).randbytes(300_000)
        origin = self.open(self.serve(answer_once(ok(payload), False)))
        origin.send(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        pieces = list(origin.read_body(origin.read_head("GET")))
        self.assertEqual(b"".join(pieces), payload)
        self.assertLessEqual(max(len(piece) for piece in pieces), MAX_PIECE)

    def test_chunked_body(self) -> None:
        response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY
        origin, head, body = self.exchange(self.serve(answer_once(response, False)))
        self.assertEqual((head.framing, body), (CHUNKED, b"hello world!"))
        self.assertTrue(origin.reusable)

    def test_close_delimited_body(self) -> None:
        origin, head, body = self.exchange(self.serve(answer_once(
            b"HTTP/1.1 200 OK\r\n\r\nuntil the end")))
        self.assertEqual((head.framing, body), (UNTIL_CLOSE, b"until the end"))
        self.assertFalse(origin.reusable)

    def test_head_response_has_no_body(self) -> None:
        origin, head, body = self.exchange(self.serve(answer_once(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", False)), method="HEAD")
        self.assertEqual((head.content_length, body), (1000, b""))
        self.assertTrue(origin.reusable)

    def test_204_and_304_have_no_body(self) -> None:
        for status in (b"204 No Content", b"304 Not Modified"):
            with self.subTest(status=status):
                origin, head, body = self.exchange(self.serve(answer_once(
                    b"HTTP/1.1 " + status + b"\r\n\r\n", False)))
                self.assertEqual(body, b"")
                self.assertTrue(origin.reusable)

    def test_interim_responses_are_skipped(self) -> None:
        origin, head, body = self.exchange(self.serve(answer_once(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            + ok(b"final"), False)), method="POST")
        self.assertEqual((head.status, body), (200, b"final"))

    def test_switching_protocols_is_502(self) -> None:
        origin = self.open(self.serve(answer_once(b"HTTP/1.1 101 Switching Protocols\r\n"
                                                  b"Upgrade: websocket\r\n\r\n")))
        self.assert_head_fails(origin, 502, "bad_response")

    def test_switching_to_websocket_when_asked_hands_over_the_socket_and_early_bytes(
            self) -> None:
        origin = self.open(self.serve(answer_once(b"HTTP/1.1 101 Switching Protocols\r\n"
                                                  b"Upgrade: WebSocket\r\n\r\n\x81\x02hi")))
        origin.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        head = origin.read_head("GET", upgrade=True)
        self.assertEqual(head.status, 101)
        sock, pending = origin.detach()
        self.assertIs(sock, origin.sock)
        while len(pending) < 4:
            pending += sock.recv(4 - len(pending))
        self.assertEqual(pending, b"\x81\x02hi")
        self.assertFalse(origin.reusable)

    def test_switching_to_another_protocol_is_502_even_when_websocket_was_asked(self) -> None:
        origin = self.open(self.serve(answer_once(b"HTTP/1.1 101 Switching Protocols\r\n"
                                                  b"Upgrade: h2c\r\n\r\n")))
        self.assert_head_fails(origin, 502, "bad_response", upgrade=True)

    def test_malformed_head_is_502(self) -> None:
        for response in (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
                         b"\r\n\r\nhello", b"HTTP/1.1 200 OK\nX: 1\n\n", b"ICY 200 OK\r\n\r\n",
                         b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70000):
            with self.subTest(response=response[:60]):
                origin = self.open(self.serve(answer_once(response)))
                self.assert_head_fails(origin, 502, "bad_response")

    def test_close_before_the_head_is_502(self) -> None:
        for response in (b"", b"HTTP/1.1 200 OK\r\nContent-"):
            with self.subTest(response=response):
                origin = self.open(self.serve(answer_once(response)))
                error = self.assert_head_fails(origin, 502, "reset")
                self.assertNotIsInstance(error, StaleConnection)

    def test_silent_origin_is_504(self) -> None:
        done = threading.Event()
        origin = self.open(self.serve(lambda peer: done.wait(SOCKET_TIMEOUT)), timeout=SHORT)
        self.addCleanup(done.set)  # cleanups run last first: before the server's join
        self.assert_head_fails(origin, 504, "timeout")

    def test_trickled_head_is_bounded_as_a_whole(self) -> None:
        # One byte at a time, each well within the time-out, must not stretch it forever.
        done = threading.Event()

        def trickle(peer: Peer) -> None:
            peer.read_head()
            while not done.wait(SHORT / 5):
                peer.send(b"X")
        origin = self.open(self.serve(trickle), timeout=SHORT)
        self.addCleanup(done.set)
        self.assert_head_fails(origin, 504, "timeout")

    def test_body_cut_short(self) -> None:
        for response in (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
                         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
            with self.subTest(response=response):
                origin = self.open(self.serve(answer_once(response)))
                origin.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                head = origin.read_head("GET")
                with self.assertRaises(OriginBodyError):
                    b"".join(origin.read_body(head))
                self.assertFalse(origin.reusable)

    def test_bad_chunked_framing_breaks_the_body_off(self) -> None:
        for framing in BAD_CHUNKED:
            with self.subTest(framing=framing[:40]):
                server = self.serve(answer_once(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framing))
                origin = connect(("origin.test", server.port), server.addresses,
                                 SOCKET_TIMEOUT, SOCKET_TIMEOUT, SMALL_LIMITS)
                self.addCleanup(origin.close)
                origin.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                head = origin.read_head("GET")
                with self.assertRaises(OriginBodyError):
                    b"".join(origin.read_body(head))
                self.assertFalse(origin.reusable)

    def test_stalled_body(self) -> None:
        done = threading.Event()

        def stall(peer: Peer) -> None:
            peer.read_head()
            peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            done.wait(SOCKET_TIMEOUT)
        origin = self.open(self.serve(stall), timeout=SHORT)
        self.addCleanup(done.set)
        origin.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        head = origin.read_head("GET")
        body = origin.read_body(head)
        self.assertEqual(next(body), b"half")
        with self.assertRaises(OriginBodyError):
            next(body)

    def test_extra_bytes_after_the_body_make_it_unreusable(self) -> None:
        origin, _, body = self.exchange(self.serve(answer_once(ok(b"abc") + b"junk", False)))
        self.assertEqual(body, b"abc")
        self.assertFalse(origin.reusable)

    def buffered(self, response: bytes) -> Tuple[Origin, object]:
        """An origin whose whole ``response`` is waiting before its head is read."""
        ours, theirs = socket.socketpair()
        self.addCleanup(theirs.close)
        origin = Origin(ours, ("origin.test", 80), SOCKET_TIMEOUT)
        self.addCleanup(origin.close)
        theirs.sendall(response)
        return origin, origin.read_head("GET")

    def test_body_that_came_with_the_head_is_taken_whole(self) -> None:
        origin, head = self.buffered(ok(b"x" * 10))
        self.assertEqual(origin.buffered, 10)
        self.assertEqual(origin.buffered_body(head), b"x" * 10)
        self.assertEqual((origin.buffered, origin.reusable), (0, True))

    def test_body_taken_whole_with_extra_bytes_is_not_reusable(self) -> None:
        origin, head = self.buffered(ok(b"abc") + b"junk")
        self.assertEqual(origin.buffered_body(head), b"abc")
        self.assertFalse(origin.reusable)

    def test_body_taken_whole_from_an_origin_that_closes_is_not_reusable(self) -> None:
        origin, head = self.buffered(b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                                     b"Content-Length: 2\r\n\r\nhi")
        self.assertEqual(origin.buffered_body(head), b"hi")
        self.assertFalse(origin.reusable)

    def test_unfinished_body_is_not_reusable(self) -> None:
        origin = self.open(self.serve(answer_once(ok(b"x" * 200_000), False)))
        origin.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        body = origin.read_body(origin.read_head("GET"))
        next(body)
        self.assertFalse(origin.reusable)


class ConnectTest(UpstreamTestCase):
    def test_refused_is_502(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            connect(("a", 1), [(socket.AF_INET, ("127.0.0.1", free_port()))],
                    SOCKET_TIMEOUT, SOCKET_TIMEOUT)
        self.assertEqual((caught.exception.status, caught.exception.failure),
                         (502, "refused"))

    def test_no_addresses_is_502(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            connect(("a", 1), [], SOCKET_TIMEOUT, SOCKET_TIMEOUT)
        self.assertEqual((caught.exception.status, caught.exception.failure),
                         (502, "unreachable"))

    def test_next_address_is_tried(self) -> None:
        server = self.serve(answer_once(ok(), False))
        origin = connect(("a", server.port),
                         [(socket.AF_INET, ("127.0.0.1", free_port()))] + server.addresses,
                         SOCKET_TIMEOUT, SOCKET_TIMEOUT)
        self.addCleanup(origin.close)
        self.assertEqual(origin.sock.getpeername(), ("127.0.0.1", server.port))

    def full_listener(self) -> int:
        """A port whose accept queue is full, so that a further SYN goes unanswered."""
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = socket.create_connection(("127.0.0.1", port), SOCKET_TIMEOUT)
        self.addCleanup(queued.close)
        return port

    def test_connect_time_out_is_504(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            connect(("a", 1), [(socket.AF_INET, ("127.0.0.1", self.full_listener()))], SHORT,
                    SOCKET_TIMEOUT)
        self.assertEqual((caught.exception.status, caught.exception.failure),
                         (504, "connect_timeout"))

    def test_time_out_then_refused_is_502(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            connect(("a", 1), [(socket.AF_INET, ("127.0.0.1", self.full_listener())),
                               (socket.AF_INET, ("127.0.0.1", free_port()))], SHORT,
                    SOCKET_TIMEOUT)
        self.assertEqual((caught.exception.status, caught.exception.failure),
                         (502, "refused"))


    def test_a_silent_first_address_does_not_hold_up_the_next(self) -> None:
        # Issue: a dead IPv6 address cost a whole connect_timeout before IPv4 was tried.
        server = self.serve(answer_once(ok(), False))
        silent = (socket.AF_INET, ("127.0.0.1", self.full_listener()))
        result: List[object] = []
        racing = threading.Thread(target=lambda: result.append(connect(
            ("a", server.port), [silent] + server.addresses, 3600.0, SOCKET_TIMEOUT)),
            daemon=True)
        racing.start()
        racing.join(SOCKET_TIMEOUT)
        self.assertFalse(racing.is_alive(), "the second address was not tried in time")
        origin, = result
        self.addCleanup(origin.close)
        self.assertEqual(origin.sock.getpeername(), ("127.0.0.1", server.port))

    def test_families_take_turns_ipv6_first(self) -> None:
        v4a, v4b = (socket.AF_INET, ("192.0.2.1", 80)), (socket.AF_INET, ("192.0.2.2", 80))
        v6a = (socket.AF_INET6, ("2001:db8::1", 80, 0, 0))
        self.assertEqual(interleave([v4a, v4b, v6a]), [v6a, v4a, v4b])
        self.assertEqual(interleave([v4a, v4b]), [v4a, v4b])


def open_(origin: Origin) -> bool:
    """Whether ``origin``'s connection is open: the pool closes each one it does not keep."""
    return origin.sock.fileno() != -1




class PoolTest(UpstreamTestCase):
    def request(self, pool: OriginPool, server: OriginServer, host: str = "origin.test",
                method: str = "GET") -> Tuple[Origin, bytes]:
        origin = pool.connect(host, server.port, server.addresses,
                              connect_timeout=SOCKET_TIMEOUT, upstream_timeout=SOCKET_TIMEOUT)
        try:
            origin.send(f"{method} / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = origin.read_head(method)
            body = b"".join(origin.read_body(head))
        except BaseException:
            origin.close()  # as the proxy does with a connection that failed
            raise
        pool.release(origin)
        return origin, body

    def pool(self, **settings) -> OriginPool:
        pool = OriginPool(**settings)
        self.addCleanup(pool.close)
        return pool

    def test_the_tally_counts_connections_opened_and_reused(self) -> None:
        server = self.serve(keep_alive(lambda head: ok()))
        tally = new_tally()
        pool = self.pool(tally=tally)
        for host in ("a.test", "a.test", "b.test", "a.test"):
            self.request(pool, server, host=host)
        self.assertEqual((tally[ORIGINS_OPENED], tally[ORIGINS_REUSED]), (2, 2))
        self.assertEqual(server.accepted, 2)
        with self.assertRaises(HTTPError):  # a connection that fails is not counted
            pool.connect("c.test", 1, [(socket.AF_INET, ("127.0.0.1", free_port()))],
                         connect_timeout=SOCKET_TIMEOUT, upstream_timeout=SOCKET_TIMEOUT)
        self.assertEqual(tally[ORIGINS_OPENED], 2)

    def test_keep_alive_connection_is_reused(self) -> None:
        server = self.serve(keep_alive(lambda head: ok(b"again")))
        pool = self.pool()
        first, body = self.request(pool, server)
        second, _ = self.request(pool, server)
        third, _ = self.request(pool, server, method="HEAD")
        self.assertEqual(body, b"again")
        self.assertIs(first, second)
        self.assertIs(second, third)
        self.assertEqual((first.reused, server.accepted), (True, 1))

    def test_hosts_do_not_share_connections(self) -> None:
        server = self.serve(keep_alive(lambda head: ok()))
        pool = self.pool()
        first, _ = self.request(pool, server, host="a.test")
        second, _ = self.request(pool, server, host="b.test")
        self.assertEqual(server.accepted, 2)
        self.assertEqual([open_(first), open_(second)], [True, True])  # both kept
        self.assertIs(self.request(pool, server, host="a.test")[0], first)

    def test_connections_that_cannot_persist_are_closed(self) -> None:
        for response in (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
                         b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
                         b"HTTP/1.1 200 OK\r\n\r\nuntil close"):
            with self.subTest(response=response):
                server = self.serve(answer_once(response))
                pool = self.pool()
                origin, _ = self.request(pool, server)
                self.assertFalse(open_(origin))

    def test_unfinished_response_is_not_pooled(self) -> None:
        server = self.serve(keep_alive(lambda head: ok(b"x" * 200_000)))
        pool = self.pool()
        origin = pool.connect("a", server.port, server.addresses,
                              connect_timeout=SOCKET_TIMEOUT, upstream_timeout=SOCKET_TIMEOUT)
        origin.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        next(origin.read_body(origin.read_head("GET")))
        pool.release(origin)
        self.assertFalse(open_(origin))

    def test_per_host_cap(self) -> None:
        server = self.serve(keep_alive(lambda head: ok()))
        pool = self.pool(per_host=2)
        origins = [pool.connect("a", server.port, server.addresses,
                                connect_timeout=SOCKET_TIMEOUT,
                                upstream_timeout=SOCKET_TIMEOUT) for _ in range(3)]
        for origin in origins:
            origin.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            b"".join(origin.read_body(origin.read_head("GET")))
            pool.release(origin)
        self.assertEqual([open_(origin) for origin in origins], [True, True, False])

    def test_per_host_cap_counts_only_the_connections_still_idle(self) -> None:
        clock = FakeClock()
        server = self.serve(keep_alive(lambda head: ok()))
        pool = self.pool(per_host=1, total=1, idle_timeout=30, clock=clock)
        first, _ = self.request(pool, server, host="a.test")
        second, _ = self.request(pool, server, host="b.test")  # the total cap drops first
        third, _ = self.request(pool, server, host="a.test")
        self.assertEqual([open_(first), open_(second), open_(third)], [False, False, True])
        self.assertIs(self.request(pool, server, host="a.test")[0], third)  # taken, given back
        clock.now += 31
        fourth, _ = self.request(pool, server, host="a.test")  # third expired
        self.assertEqual([open_(third), open_(fourth)], [False, True])
        self.assertEqual(server.accepted, 4)

    def test_total_cap_drops_the_least_recently_used(self) -> None:
        server = self.serve(keep_alive(lambda head: ok()))
        pool = self.pool(total=2)
        origins = [self.request(pool, server, host=host)[0]
                   for host in ("a.test", "b.test", "c.test")]
        self.assertEqual([open_(origin) for origin in origins], [False, True, True])

    def test_idle_time_out(self) -> None:
        clock = FakeClock()
        server = self.serve(keep_alive(lambda head: ok()))
        pool = self.pool(idle_timeout=30, clock=clock)
        first, _ = self.request(pool, server)
        clock.now += 29
        self.assertIs(self.request(pool, server)[0], first)
        clock.now += 31
        second, _ = self.request(pool, server)
        self.assertIsNot(second, first)
        self.assertEqual((first.sock.fileno(), server.accepted), (-1, 2))

    def test_each_connection_expires_on_its_own_idle_time(self) -> None:
        clock = FakeClock(100)
        server = self.serve(keep_alive(lambda head: ok()))
        pool = self.pool(idle_timeout=30, clock=clock)
        first, _ = self.request(pool, server, host="a.test")  # idle from 100
        clock.now = 110
        second, _ = self.request(pool, server, host="b.test")  # idle from 110
        clock.now = 125
        self.assertIs(self.request(pool, server, host="a.test")[0], first)  # idle from 125
        clock.now = 140
        third, _ = self.request(pool, server, host="c.test")  # idle from 140
        self.assertEqual([open_(first), open_(second), open_(third)], [True, False, True])
        clock.now = 154.5
        self.assertIs(self.request(pool, server, host="c.test")[0], third)
        self.assertTrue(open_(first))
        clock.now = 155
        self.assertIs(self.request(pool, server, host="c.test")[0], third)
        self.assertFalse(open_(first))
        self.assertEqual(server.accepted, 3)

    def test_connection_the_origin_closed_while_idle_is_not_reused(self) -> None:
        def one_then_close(peer: Peer) -> None:
            peer.read_head()
            peer.send(ok())
        server = self.serve(one_then_close)
        tally = new_tally()
        pool = self.pool(tally=tally)
        first, _ = self.request(pool, server)
        for thread in list(server._threads):
            thread.join(SOCKET_TIMEOUT)  # the origin has closed its end
        second, body = self.request(pool, server)
        self.assertIsNot(first, second)
        self.assertEqual((body, server.accepted, second.reused), (b"hello", 2, False))
        # The closed one was taken from the pool, and a new one opened in its place.
        self.assertEqual((tally[ORIGINS_OPENED], tally[ORIGINS_REUSED]), (2, 1))

    def test_close_racing_the_next_request_is_a_stale_connection(self) -> None:
        def close_at_second_request(peer: Peer) -> None:
            peer.read_head()
            peer.send(ok())
            peer.read_head()  # the second request arrives; close without answering
        server = self.serve(close_at_second_request)
        pool = self.pool()
        self.request(pool, server)
        with self.assertRaises(StaleConnection) as caught:
            self.request(pool, server)
        self.assertEqual((caught.exception.status, caught.exception.failure),
                         (502, "reset"))

    def test_many_threads_share_the_pool(self) -> None:
        server = self.serve(keep_alive(lambda head: ok(head.split(b" ")[1])))
        pool = self.pool(per_host=4)
        used: List[Origin] = []

        def work(index: int) -> None:
            for round_ in range(20):
                path = f"/{index}-{round_}"
                origin = pool.connect("a", server.port, server.addresses,
                                      connect_timeout=SOCKET_TIMEOUT,
                                      upstream_timeout=SOCKET_TIMEOUT)
                used.append(origin)
                origin.send(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                body = b"".join(origin.read_body(origin.read_head("GET")))
                if body != path.encode():
                    raise AssertionError(f"{body!r} for {path}")
                pool.release(origin)

        run_in_threads(work, 6)
        self.assertLessEqual(len({origin for origin in used if open_(origin)}), 4)
        self.assertLessEqual(server.accepted, 6 + 20 * 6)

    def test_close_empties_the_pool(self) -> None:
        server = self.serve(keep_alive(lambda head: ok()))
        pool = self.pool()
        origin, _ = self.request(pool, server)
        pool.close()
        self.assertFalse(open_(origin))


if __name__ == "__main__":
    unittest.main()
