"""Newcomers first: answered keep-alive connections make way for connections not yet under
way, and no client can hold them back for long.

The count is tested alone, then through the real connection loop over socket pairs; the
burst it is for runs against the real server in ``bench/tail.py`` (a burst of 1,000 clients
is a benchmark, not a unit test), and ``test_lifecycle``'s many clients over loopback.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import tempfile
import threading
import unittest
from typing import Iterator, Optional, Tuple

from nex.process.connection import Connection
from nex.process.newcomers import Newcomers
from nex.process.tls import ServerTLS
from tests.support import (SOCKET_TIMEOUT, ResponseReader, capture_log, make_certificate,
                           requires_openssl, socketpair_dispatcher, temp_root, wait_until)

REQUEST = b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n"
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
        self.logger = capture_log(self).logger
        # Long enough that a held-back request is never let go by the bound in a test.
        self.newcomers = Newcomers(yield_seconds=SOCKET_TIMEOUT * 10)

    @contextlib.contextmanager
    def connection(self, tls: Optional[ServerTLS] = None, others: int = 0, sent: bytes = b""
                   ) -> Iterator[Tuple[Connection, socket.socket, threading.Thread]]:
        """A Connection serving on a thread of its own, counted among the newcomers beside
        ``others``, the client having ``sent`` its first bytes before the thread starts;
        yields it, the client's end and the thread."""
        server_end, client_end = socket.socketpair()
        client_end.settimeout(SOCKET_TIMEOUT)
        connection = Connection(server_end, "127.0.0.1", self.dispatcher, self.logger,
                                threading.Event(), tls, newcomers=self.newcomers)
        self.assertEqual(self.newcomers.waiting, others + 1,
                         "an admitted connection is a newcomer")
        client_end.sendall(sent)
        worker = threading.Thread(target=connection.serve)
        worker.start()
        try:
            yield connection, client_end, worker
        finally:
            client_end.close()
            worker.join(SOCKET_TIMEOUT)
        self.assertFalse(worker.is_alive())
        self.assertEqual(self.newcomers.waiting, 0, "a closed connection is no newcomer")

    def assert_answered(self, client_end: socket.socket) -> None:
        status, _, body = ResponseReader(client_end).read()[:3]
        self.assertEqual((status, body), (200, b"alpha"))

    def test_a_newcomer_that_sends_nothing_stops_counting_once_its_thread_runs(self) -> None:
        with self.connection() as (connection, client_end, worker):
            wait_until(lambda: self.newcomers.waiting == 0, what="the silent newcomer to settle")
            self.assertTrue(worker.is_alive(), "settled while waiting, not by closing")
            client_end.sendall(REQUEST)
            self.assert_answered(client_end)

    def test_a_newcomer_that_dribbles_its_head_stops_counting_at_its_first_wait(self) -> None:
        with self.connection(sent=REQUEST[:10]) as (connection, client_end, worker):
            wait_until(lambda: self.newcomers.waiting == 0, what="the slow newcomer to settle")
            self.assertTrue(worker.is_alive())
            client_end.sendall(REQUEST[10:])
            self.assert_answered(client_end)

    @requires_openssl
    def test_a_tls_newcomer_stops_counting_before_its_handshake(self) -> None:
        folder = tempfile.mkdtemp(prefix="nex-newcomers-")
        self.addCleanup(shutil.rmtree, folder, True)
        certificate, key = make_certificate(folder)
        # The start of a ClientHello and no more: the handshake waits for the rest.
        hello = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + bytes(32)
        with self.connection(ServerTLS(certificate, key), sent=hello) as (
                _, client_end, worker):
            wait_until(lambda: self.newcomers.waiting == 0, what="the TLS newcomer to settle")
            self.assertTrue(worker.is_alive())

    def test_a_first_request_goes_ahead_and_the_next_waits_for_newcomers(self) -> None:
        self.newcomers.arrive()  # another client, not yet under way
        with self.connection(others=1) as (connection, client_end, worker):
            client_end.sendall(REQUEST + REQUEST)
            self.assert_answered(client_end)
            # Answered, this connection is under way and its next request gives way.
            self.assertEqual(self.newcomers.waiting, 1)
            readable, _, _ = select.select([client_end], [], [], HELD_BACK_SECONDS)
            self.assertEqual(readable, [], "the next request went ahead of the newcomer")
            self.newcomers.settle()
            self.assert_answered(client_end)


if __name__ == "__main__":
    unittest.main()
