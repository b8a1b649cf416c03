"""Newcomers first: answered keep-alive connections make way for connections not yet under
way, and no client can hold them back for long.

The count is tested alone, then through the real connection loop over socket pairs: every
path settles a connection exactly once, and no wait for the client happens while it is still
counted.  The burst it is for runs against the real server in ``bench/tail.py`` (a burst of
1,000 clients is a benchmark, not a unit test), and ``test_lifecycle``'s many clients over
loopback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
import shutil
import socket
import tempfile
import threading
import unittest
from typing import Iterator, Tuple

from nex.http.errors import HTTPError
from nex.process.connection import Connection
from nex.process.newcomers import Newcomers
from nex.process.states import State
from nex.process.tls import ServerTLS
from nex.site.clients import ForwardedFor
from tests.support import (SOCKET_TIMEOUT, ResponseReader, capture_log,
                           connection_over_socketpair, in_process_server, make_certificate,
                           quiet_config, read_all, requires_openssl, socketpair_dispatcher,
                           temp_root, wait_until)

REQUEST = b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n"
HEADER = b"PROXY TCP4 203.0.113.9 198.51.100.1 40000 80\r\n"
MALFORMED = b"GET /a.txt HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n"
#: How long a held-back response is watched for: without the rule it comes at once.
HELD_BACK_SECONDS = 0.5


class NewcomersTest(unittest.TestCase):
    def test_the_count_follows_arrivals_and_settlements(self) -> None:
        newcomers = Newcomers()
        newcomers.arrive()
        newcomers.arrive()
        self.assertEqual(newcomers.waiting, 2)
        newcomers.settle()
        self.assertEqual(newcomers.waiting, 1)
        newcomers.settle()
        self.assertEqual(newcomers.waiting, 0)

    def test_giving_way_with_no_newcomer_returns_at_once(self) -> None:
        newcomers = Newcomers(yield_seconds=SOCKET_TIMEOUT * 10)
        finished = threading.Event()
        waiter = threading.Thread(target=lambda: (newcomers.give_way(), finished.set()))
        waiter.start()
        self.assertTrue(finished.wait(SOCKET_TIMEOUT))
        waiter.join()

    def test_giving_way_ends_when_the_last_newcomer_settles(self) -> None:
        newcomers = Newcomers(yield_seconds=SOCKET_TIMEOUT * 10)
        newcomers.arrive()
        newcomers.arrive()
        settled = []
        finished = threading.Event()

        def give_way() -> None:
            newcomers.give_way()
            finished.set()

        waiter = threading.Thread(target=give_way)
        waiter.start()
        newcomers.settle()
        self.assertFalse(finished.wait(HELD_BACK_SECONDS), "one newcomer is still waiting")
        settled.append(True)
        newcomers.settle()
        self.assertTrue(finished.wait(SOCKET_TIMEOUT))
        waiter.join()
        self.assertEqual(settled, [True])

    def test_giving_way_is_bounded(self) -> None:
        newcomers = Newcomers(yield_seconds=0.01)
        newcomers.arrive()  # never settles
        newcomers.give_way()  # returns: the test would hang otherwise
        self.assertEqual(newcomers.waiting, 1)


class ConnectionNewcomerTest(unittest.TestCase):
    """The real connection loop over a socket pair, counted among ``self.newcomers``."""

    def setUp(self) -> None:
        self.dispatcher = socketpair_dispatcher(temp_root(self, {"a.txt": b"alpha"}))
        self.log = capture_log(self)
        # Long enough that a held-back request is never let go by the bound in a test.
        self.newcomers = Newcomers(yield_seconds=SOCKET_TIMEOUT * 10)
        #: Newcomers a test counts besides its connections.
        self.others = 0

    @contextlib.contextmanager
    def connection(self, **options) -> Iterator[Tuple[Connection, socket.socket]]:
        """:func:`connection_over_socketpair` with ``options``, counted among the newcomers;
        once it has ended, it must have settled exactly once."""
        with connection_over_socketpair(self.dispatcher, self.log.logger,
                                        newcomers=self.newcomers, **options) as opened:
            yield opened
        self.assertEqual(self.newcomers.waiting, self.others, "a closed connection is no newcomer")
        self.assertEqual(self.newcomers._none_waiting.is_set(), not self.others,
                         "the count and event agree")

    def proxied(self, trusted: bool = True) -> None:
        """Serve the PROXY protocol from 127.0.0.1 (``trusted``) or from another address."""
        config = dataclasses.replace(self.dispatcher.config, proxy_protocol="any",
                                     trusted_proxies=("127.0.0.1" if trusted else "10.0.0.1",))
        self.dispatcher = dataclasses.replace(
            self.dispatcher, config=config, forwarded=ForwardedFor(config.trusted_proxies))

    def assert_answered(self, client_end: socket.socket) -> None:
        status, _, body = ResponseReader(client_end).read()[:3]
        self.assertEqual((status, body), (200, b"alpha"))

    def test_a_newcomer_that_sends_nothing_stops_counting_once_its_thread_runs(self) -> None:
        with self.connection() as (connection, client_end):
            wait_until(lambda: self.newcomers.waiting == 0, what="the silent newcomer to settle")
            self.assertIsNot(connection.state, State.CLOSED,
                             "settled while waiting, not by closing")
            client_end.sendall(REQUEST)
            self.assert_answered(client_end)

    def test_a_newcomer_that_dribbles_its_head_stops_counting_at_its_first_wait(self) -> None:
        with self.connection(sent=REQUEST[:10]) as (connection, client_end):
            wait_until(lambda: self.newcomers.waiting == 0, what="the slow newcomer to settle")
            self.assertIsNot(connection.state, State.CLOSED)
            client_end.sendall(REQUEST[10:])
            self.assert_answered(client_end)

    @requires_openssl
    def test_a_tls_newcomer_stops_counting_before_its_handshake(self) -> None:
        folder = tempfile.mkdtemp(prefix="nex-newcomers-")
        self.addCleanup(shutil.rmtree, folder, True)
        certificate, key = make_certificate(folder)
        # The start of a ClientHello and no more: the handshake waits for the rest.
        hello = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + bytes(32)
        with self.connection(tls=ServerTLS(certificate, key), sent=hello) as (
                connection, client_end):
            wait_until(lambda: self.newcomers.waiting == 0, what="the TLS newcomer to settle")
            self.assertIsNot(connection.state, State.CLOSED)

    def test_a_first_request_goes_ahead_and_the_next_waits_for_newcomers(self) -> None:
        self.newcomers.arrive()  # another client, not yet under way
        self.others = 1
        with self.connection() as (connection, client_end):
            client_end.sendall(REQUEST + REQUEST)
            self.assert_answered(client_end)
            # Answered, this connection is under way and its next request gives way.
            self.assertEqual(self.newcomers.waiting, 1)
            readable, _, _ = select.select([client_end], [], [], HELD_BACK_SECONDS)
            self.assertEqual(readable, [], "the next request went ahead of the newcomer")
            self.newcomers.settle()
            self.others = 0
            self.assert_answered(client_end)


    def assert_counted_out_while_lingering(self, connection: Connection,
                                           client_end: socket.socket, status: bytes) -> None:
        """The refusal is read to its end (the server half-closed and now drains what the
        client sends, up to 2 s): that wait for the client is no newcomer's."""
        answer = read_all(client_end)
        self.assertTrue(answer.startswith(b"HTTP/1.1 " + status), answer[:40])
        waiting, lingering = self.newcomers.waiting, connection.state is not State.CLOSED
        if lingering:  # still lingering (the usual case: the client has not closed)
            self.assertEqual(waiting, 0, "a lingering refused connection still holds every "
                                         "keep-alive request back")

    def test_a_first_head_refused_with_400_is_not_counted_while_it_lingers(self) -> None:
        with self.connection(sent=MALFORMED) as (connection, client_end):
            self.assert_counted_out_while_lingering(connection, client_end, b"400")

    def test_a_first_head_too_large_is_not_counted_while_it_lingers(self) -> None:
        # Just over the 64 KiB head limit, all in the buffer before the thread runs (it fits
        # a socket pair's buffer): the thread never waits, so it is counted through the 431.
        big = b"GET /a.txt HTTP/1.1\r\nHost: a\r\nX: " + b"x" * 70_000 + b"\r\n\r\n"
        with self.connection(sent=big) as (connection, client_end):
            self.assert_counted_out_while_lingering(connection, client_end, b"431")

    @requires_openssl
    def test_plain_http_to_a_tls_port_is_not_counted_while_it_lingers(self) -> None:
        folder = tempfile.mkdtemp(prefix="nex-newcomers-")
        self.addCleanup(shutil.rmtree, folder, True)
        certificate, key = make_certificate(folder)
        with self.connection(sent=REQUEST, tls=ServerTLS(certificate, key)) as (
                connection, client_end):
            self.assert_counted_out_while_lingering(connection, client_end, b"400")

    def test_a_malformed_proxy_header_is_not_counted_while_it_lingers(self) -> None:
        self.proxied()
        with self.connection(sent=b"PROXY TCP4 nonsense\r\n" + REQUEST) as (
                connection, client_end):
            self.assert_counted_out_while_lingering(connection, client_end, b"400")

    def test_a_trusted_proxy_header_split_before_the_thread_runs_is_taken(self) -> None:
        # MSG_PEEK|MSG_WAITALL|MSG_DONTWAIT returns the bytes already peeked instead of
        # waiting for one more: take_proxy_header reads that as "closed inside the header".
        self.proxied()
        with self.connection(sent=HEADER[:20], tcp=True) as (connection, client_end):
            wait_until(lambda: self.newcomers.waiting == 0, what="the newcomer to settle")
            try:
                client_end.sendall(HEADER[20:] + REQUEST)
                status, _, body = ResponseReader(client_end).read()[:3]
            except (OSError, ValueError) as error:
                self.fail(f"the connection was dropped inside the PROXY header: {error!r}")
            self.assertEqual((status, body), (200, b"alpha"))
        self.assertIn("203.0.113.9", self.log.access())

    def test_an_untrusted_proxy_header_split_is_still_refused_as_a_proxy_header(self) -> None:
        self.proxied(trusted=False)
        with self.connection(sent=HEADER[:3], tcp=True) as (connection, client_end):
            wait_until(lambda: self.newcomers.waiting == 0 or connection.state is State.CLOSED,
                       what="the newcomer to settle")
            client_end.sendall(HEADER[3:] + REQUEST)
            answer = read_all(client_end)
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer[:40])
        self.assertTrue(b"only from a trusted proxy" in answer, answer[-220:])

    def test_a_refused_readmit_settles_once(self) -> None:
        self.proxied()
        refusal = HTTPError(429, "too many", close=True)
        # The header alone: turn_away closes without reading, so unread bytes would reset.
        with self.connection(sent=HEADER, readmit=lambda c, client: refusal) as (
                _, client_end):
            self.assertTrue(read_all(client_end).startswith(b"HTTP/1.1 429"))

    def test_an_admitted_connection_is_a_newcomer_and_turn_away_settles_it_once(self) -> None:
        server_end, client_end = socket.socketpair()
        self.addCleanup(client_end.close)
        connection = Connection(server_end, "127.0.0.1", self.dispatcher, self.log.logger,
                                threading.Event(), newcomers=self.newcomers)
        self.assertEqual(self.newcomers.waiting, 1, "an admitted connection is a newcomer")
        connection.turn_away(HTTPError(503, "busy", close=True))
        self.assertEqual(self.newcomers.waiting, 0)

    def test_a_closed_silent_and_a_100_continue_first_request_settle_once(self) -> None:
        with self.connection() as (connection, client_end):
            client_end.shutdown(socket.SHUT_WR)
            wait_until(lambda: connection.state is State.CLOSED, what="the loop to end")
        upload = (b"PUT /b.txt HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 5\r\n\r\n")
        with self.connection(sent=upload) as (connection, client_end):
            wait_until(lambda: self.newcomers.waiting == 0, what="the newcomer to settle")
            self.assertTrue(read_all(client_end))  # 100 then a refusal, or a refusal

    def test_http_1_0_and_pipelined_requests_settle_once(self) -> None:
        with self.connection(sent=REQUEST.replace(b"1.1", b"1.0")) as (_, client_end):
            self.assertTrue(read_all(client_end).startswith(b"HTTP/1.1 200"))
        with self.connection(sent=REQUEST * 3) as (_, client_end):
            reader = ResponseReader(client_end)
            for _ in range(3):
                self.assertEqual(reader.read()[0], 200)


class UnstartedWorkTest(unittest.TestCase):
    """The listener turns away work the pool could not start: it settles there."""

    def test_unstarted_work_is_settled(self) -> None:
        for values in ({}, {"proxy_protocol": "any", "trusted_proxies": "127.0.0.1"}):
            with self.subTest(**values):
                server = in_process_server(self, quiet_config(self, **values))
                server._pool.run_all = lambda works: list(works)
                listener = threading.Thread(target=server.serve_forever)
                listener.start()
                try:
                    with socket.create_connection(("127.0.0.1", server.port),
                                                  timeout=SOCKET_TIMEOUT) as client:
                        self.assertTrue(read_all(client).startswith(b"HTTP/1.1 503"))
                    # turn_away half-closes before it settles: poll.
                    wait_until(lambda: server._newcomers.waiting == 0,
                               what="the unstarted connection to settle")
                finally:
                    server.stop()
                    listener.join(SOCKET_TIMEOUT)
                self.assertFalse(listener.is_alive())


if __name__ == "__main__":
    unittest.main()
