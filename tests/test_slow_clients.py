"""Slow and vanishing clients: the head time-out from accept, a request body's minimum rate,
and a client that resets inside a request body.

The unit tests run the real connection loop over a socket pair, or a body reader over a
fake clock; the functional tests talk to the real server over loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import unittest
from typing import List
from unittest import mock

from nex.http.body import BodyReader
from nex.http.errors import HTTPError
from nex.http.request import Limits, parse_head
from nex.process.connection import Connection
from tests.support import (SOCKET_TIMEOUT, NexServer, ResponseReader, capture_log, read_all,
                           socketpair_dispatcher)


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
