"""The connection's life without a server: states, the keep-or-close rule, body reading.

Socketless where the piece allows (``stays_open``, :class:`BodyReader` with a scripted
receive), over a socket pair where the connection loop itself is the subject.
"""

from __future__ import annotations

import socket
import unittest

from nex.http.body import BodyReader
from nex.process.states import TRANSITIONS, State, refuse_new_tunnel, stays_open
from nex.http.errors import HTTPError
from nex.http.framing import HeadLimits
from nex.http.request import parse_head
from nex.http.response import Response, serialize_head, write_response
from tests.support import (SOCKET_TIMEOUT, capture_log, connection_over_socketpair, read_all,
                           socketpair_dispatcher)
from tests.support import temp_root


def request(*fields: str, line: str = "GET / HTTP/1.1"):
    """A parsed request head with ``fields`` (``"Name: value"``)."""
    head = "\r\n".join((line,) + fields) + "\r\n\r\n"
    return parse_head(head.encode("latin-1"), HeadLimits())


class Script:
    """A ``receive(deadline)`` that hands out scripted pieces, recording each call."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.calls = 0
        self.events: list = []

    def __call__(self, deadline: float) -> bytes:
        self.calls += 1
        self.events.append("receive")
        return self.pieces.pop(0) if self.pieces else b""


HOST = "Host: a"


class StaysOpenTest(unittest.TestCase):
    """One function decides; each reason to close is a row."""

    def test_table(self):
        ok = Response(200, [], [b"x"])
        cases = [
            ("HTTP/1.1 default", request(HOST), ok, None, False, True),
            ("HTTP/1.0 default", request(line="GET / HTTP/1.0"), ok, None, False, False),
            ("HTTP/1.0 keep-alive", request("Connection: keep-alive", line="GET / HTTP/1.0"),
             ok, None, False, True),
            ("Connection: close", request(HOST, "Connection: close"), ok, None, False, False),
            ("server stopping", request(HOST), ok, None, True, False),
            ("response asks to close", request(HOST), Response(200, [], [b"x"], close=True),
             None, False, False),
            ("400 leaves framing in doubt", request(HOST), Response(400), None, False, False),
            ("404 keeps it", request(HOST), Response(404, [], [b"x"]), None, False, True),
            ("no request (bad head)", None, ok, None, False, False),
            ("tunnel takes over", request(HOST), Response(200, tunnel=lambda s, p: (0, 0)),
             None, False, False),
            ("stream of unknown length to HTTP/1.0 ends by closing",
             request("Connection: keep-alive", line="GET / HTTP/1.0"),
             Response(200, stream=iter([b"x"])), None, False, False),
            ("stream of unknown length to HTTP/1.1 is chunked", request(HOST),
             Response(200, stream=iter([b"x"])), None, False, True),
            ("HEAD has no body to end by closing",
             request("Connection: keep-alive", line="HEAD / HTTP/1.0"),
             Response(200, stream=iter([b"x"])), None, False, True),
            ("an origin's 500 says nothing of this connection", request(HOST),
             Response(500, stream=iter([b"x"]), stream_length=1, forwarded=True), None, False,
             True),
            ("a 500 of Nex's own closes", request(HOST), Response(500, [], [b"x"]), None,
             False, False),
        ]
        for label, req, response, body, stopping, expected in cases:
            with self.subTest(label):
                self.assertIs(stays_open(req, response, body, stopping), expected)

    def test_unread_body_closes(self):
        req = request(HOST, "Content-Length: 3", line="POST / HTTP/1.1")
        body = BodyReader(req, bytearray(), Script(), 10, 100, HeadLimits())
        self.assertFalse(stays_open(req, Response(200), body, False))
        body = BodyReader(req, bytearray(b"abc"), Script(), 10, 100, HeadLimits())
        body.discard()
        self.assertTrue(stays_open(req, Response(200), body, False))


class NewTunnelTest(unittest.TestCase):
    """A stopping server opens no new tunnel: CONNECT and Upgrade are 503, to ask again."""

    def test_connect_and_upgrades_are_refused_and_others_pass(self) -> None:
        for refused in (request("Host: a:443", line="CONNECT a:443 HTTP/1.1"),
                        request("Host: a", "Connection: Upgrade", "Upgrade: websocket"),
                        request("Host: a", "Upgrade: h2c")):
            with self.subTest(refused.request_line):
                with self.assertRaises(HTTPError) as caught:
                    refuse_new_tunnel(refused)
                self.assertEqual((caught.exception.status, caught.exception.headers,
                                  caught.exception.close), (503, (("Retry-After", "0"),), True))
        self.assertIsNone(refuse_new_tunnel(request("Host: a")))


class TransitionTableTest(unittest.TestCase):
    def test_every_state_has_its_row_and_closed_is_final(self):
        self.assertEqual(set(TRANSITIONS), set(State))
        self.assertEqual(TRANSITIONS[State.CLOSED], frozenset())
        for state, targets in TRANSITIONS.items():
            if state is not State.CLOSED:
                self.assertIn(State.CLOSED, targets | {State.CLOSED})

    def test_a_tunnel_never_goes_back_to_requests(self):
        self.assertEqual(TRANSITIONS[State.TUNNEL], frozenset({State.CLOSED}))


class BodyReaderTest(unittest.TestCase):
    def test_fixed_length_pieces_and_pipelined_rest(self):
        req = request(HOST, "Content-Length: 10", line="POST / HTTP/1.1")
        buffer = bytearray(b"abcd")
        script = Script(b"efgh", b"ijNEXT")
        body = BodyReader(req, buffer, script, 10, 100, HeadLimits())
        self.assertEqual(body.length, 10)
        self.assertEqual(list(body), [b"abcd", b"efgh", b"ij"])
        self.assertTrue(body.done)
        self.assertEqual(bytes(buffer), b"NEXT")
        self.assertEqual(body.read(), b"")

    def test_chunked_data_without_framing(self):
        req = request(HOST, "Transfer-Encoding: chunked", line="POST / HTTP/1.1")
        buffer = bytearray(b"3\r\nabc\r\n")
        body = BodyReader(req, buffer, Script(b"2;x=y\r\nde\r\n0\r\nT: v\r\n\r\nREST"), 10, 100,
                          HeadLimits())
        self.assertIsNone(body.length)
        self.assertEqual(b"".join(body), b"abcde")
        self.assertEqual(bytes(buffer), b"REST")

    def test_limit_refuses_before_reading(self):
        req = request(HOST, "Content-Length: 101", line="POST / HTTP/1.1")
        script = Script(b"x" * 101)
        body = BodyReader(req, bytearray(), script, 10, 100, HeadLimits())
        with self.assertRaises(HTTPError) as caught:
            body.read()
        self.assertEqual(caught.exception.status, 413)
        self.assertEqual(script.calls, 0)

    def test_a_handler_may_raise_the_limit(self):
        req = request(HOST, "Transfer-Encoding: chunked", line="POST / HTTP/1.1")
        body = BodyReader(req, bytearray(b"80\r\n" + b"x" * 128 + b"\r\n0\r\n\r\n"), Script(),
                          10, 100, HeadLimits())
        body.limit = 1000
        self.assertEqual(len(b"".join(body)), 128)

    def test_client_closing_inside_the_body_is_400(self):
        req = request(HOST, "Content-Length: 10", line="POST / HTTP/1.1")
        body = BodyReader(req, bytearray(b"abc"), Script(), 10, 100, HeadLimits())
        body.read()
        with self.assertRaises(HTTPError) as caught:
            body.read()
        self.assertEqual(caught.exception.status, 400)

    def test_continue_is_sent_once_before_the_first_wait(self):
        req = request(HOST, "Content-Length: 4", "Expect: 100-continue",
                      line="POST / HTTP/1.1")
        script = Script(b"ab", b"cd")
        body = BodyReader(req, bytearray(), script, 10, 100, HeadLimits(),
                          lambda: script.events.append("continue"))
        self.assertTrue(body.awaiting_continue)
        self.assertEqual(b"".join(body), b"abcd")
        self.assertEqual(script.events, ["continue", "receive", "receive"])
        self.assertFalse(body.awaiting_continue)


class StreamedResponseTest(unittest.TestCase):
    """The writer's framings for a body produced while sending."""

    def send(self, response: Response, chunked_allowed: bool = True,
             head_only: bool = False, wrap=lambda sock: sock) -> bytes:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            theirs.settimeout(SOCKET_TIMEOUT)
            try:
                write_response(wrap(ours), response, head_only=head_only, keep_alive=True,
                               chunked_allowed=chunked_allowed)
            finally:
                ours.shutdown(socket.SHUT_WR)
                received = read_all(theirs)
        return received

    def test_known_length(self):
        data = self.send(Response(200, [], stream=iter([b"ab", b"", b"cd"]), stream_length=4))
        self.assertIn(b"\r\nContent-Length: 4\r\n", data)
        self.assertTrue(data.endswith(b"\r\n\r\nabcd"))

    def test_chunked_for_http11(self):
        data = self.send(Response(200, [], stream=iter([b"ab", b"cde"])))
        self.assertIn(b"\r\nTransfer-Encoding: chunked\r\n", data)
        self.assertNotIn(b"Content-Length", data)
        self.assertTrue(data.endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"))

    def test_close_delimited_for_http10(self):
        data = self.send(Response(200, [], stream=iter([b"ab"])), chunked_allowed=False)
        self.assertNotIn(b"Transfer-Encoding", data)
        self.assertNotIn(b"Content-Length", data)
        self.assertTrue(data.endswith(b"\r\n\r\nab"))

    def test_a_stream_shorter_than_announced_is_a_fault(self):
        from nex.http.response import BodyFault
        with self.assertRaises(BodyFault):
            self.send(Response(200, [], stream=iter([b"ab"]), stream_length=4))

    def test_forwarded_heads_keep_the_origin_date_and_add_no_server(self):
        data = self.send(Response(200, [("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                                        ("Server", "origin")], [b"x"], forwarded=True))
        head = data.split(b"\r\n\r\n")[0]
        self.assertEqual(head.count(b"Date:"), 1)
        self.assertIn(b"Server: origin", head)
        self.assertNotIn(b"Nex/", head)

    def test_relayed_304_keeps_the_origin_length_and_sends_no_body(self):
        data = self.send(Response(304, [("ETag", '"a"')], stream=iter(()), stream_length=1234,
                                  forwarded=True))
        self.assertIn(b"\r\nContent-Length: 1234\r\n", data)
        self.assertTrue(data.endswith(b"\r\n\r\n"))
        self.assertNotIn(b"Transfer-Encoding", data)

    def test_204_never_carries_a_length(self):
        data = self.send(Response(204, [], stream=iter(()), stream_length=5, forwarded=True))
        self.assertNotIn(b"Content-Length", data)

    def test_head_keeps_the_stream_length_and_sends_no_body(self):
        data = self.send(Response(200, [], stream=iter([b"never sent"]), stream_length=10),
                         head_only=True)
        self.assertIn(b"\r\nContent-Length: 10\r\n", data)
        self.assertTrue(data.endswith(b"\r\n\r\n"))

    def test_the_send_completing_a_known_length_is_not_held_back(self):
        # With MSG_MORE on the last send, the kernel holds the body's end for 200 ms.
        for pieces, length in (([b"ab", b"cd"], 4), ([], 0)):
            with self.subTest(length=length):
                recording = []

                class Recording:
                    def __init__(self, sock):
                        self.sock = sock

                    def send(self, data, flags=0):
                        recording.append((bytes(data), flags))
                        return self.sock.send(data, flags)

                data = self.send(Response(200, [], stream=iter(pieces), stream_length=length),
                                 wrap=Recording)
                self.assertTrue(data.endswith(b"\r\n\r\n" + b"".join(pieces)))
                last_data = [flags for sent, flags in recording if sent][-1]
                self.assertEqual(last_data, 0)

    def test_origin_reason_phrase_and_unregistered_status_pass_through(self):
        data = self.send(Response(599, [], stream=iter([b"x"]), stream_length=1,
                                  forwarded=True, reason="Network Read Timeout"))
        self.assertTrue(data.startswith(b"HTTP/1.1 599 Network Read Timeout\r\n"))
        data = self.send(Response(299, [], stream=iter(()), stream_length=0, forwarded=True,
                                  reason=""))
        self.assertTrue(data.startswith(b"HTTP/1.1 299 \r\n"))

    def test_a_reason_that_would_split_the_response_is_refused(self):
        for reason in ("OK\r\nSet-Cookie: a=b", "OK\n", "O\0K"):
            with self.subTest(reason=reason), self.assertRaises(ValueError):
                serialize_head(Response(200, reason=reason), keep_alive=True)

    def test_release_closes_the_stream(self):
        closed = []

        class Stream:
            def __iter__(self):
                yield b"x"

            def close(self):
                closed.append(True)

        self.send(Response(200, [], stream=Stream(), stream_length=1))
        self.assertEqual(closed, [True])


class LoopTest(unittest.TestCase):
    """The connection loop over a socket pair, with a real dispatcher."""

    def setUp(self):
        self.root = temp_root(self, {"hello.txt": b"hello\n"})
        self.dispatcher = socketpair_dispatcher(self.root)
        self.log = capture_log(self)
        self.logger = self.log.logger

    def access_lines(self):
        """The access log's lines so far."""
        return self.log.access().splitlines()

    def serve(self, data: bytes, *, keep_open: bool = False) -> bytes:
        with connection_over_socketpair(self.dispatcher, self.logger) as (connection, client_end):
            client_end.sendall(data)
            if not keep_open:
                client_end.shutdown(socket.SHUT_WR)
            received = read_all(client_end)
        self.assertIs(connection.state, State.CLOSED)
        return received

    def test_expect_continue_on_a_body_nobody_reads_gets_the_final_answer_at_once(self):
        # The body is never sent: a server waiting for it would answer 408 after the
        # request_head time-out instead of 200 now.
        data = self.serve(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                          b"Expect: 100-continue\r\n\r\n", keep_open=True)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:80])
        self.assertNotIn(b"100 Continue", data)
        self.assertIn(b"Connection: close", data)
        self.assertTrue(data.endswith(b"hello\n"))

    def test_body_sent_without_waiting_is_discarded_and_the_connection_kept(self):
        data = self.serve(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
                          b"12345GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 2)

    def test_every_response_is_logged_once(self):
        self.serve(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                   b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\nBAD\r\n\r\n")
        lines = self.access_lines()
        self.assertEqual(len(lines), 3, lines)
        self.assertIn('"GET /hello.txt HTTP/1.1" 200 6 ', lines[0])
        self.assertIn(" 404 ", lines[1])
        self.assertIn('"BAD" 400 ', lines[2])


if __name__ == "__main__":
    unittest.main()
