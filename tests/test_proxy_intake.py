"""take_proxy_header over a stand-in for the socket: exactly the header is taken, split
headers are waited for without spinning, and only trusted peers may send one."""

from __future__ import annotations

import socket
import unittest
from typing import List, Optional

from nex.http.errors import HTTPError
from nex.process.proxy_intake import take_proxy_header
from tests.support.proxy_headers import ipv4, v2

V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Stream:
    """Bytes that arrive in ``chunks``, read as ``recv`` would with MSG_PEEK and
    MSG_WAITALL; a wait for bytes that never come ends as the peer closing."""

    def __init__(self, chunks: List[bytes]) -> None:
        self.pending = list(chunks)
        self.arrived = b""
        self.taken = 0
        self.calls = 0

    def receive(self, size: int, flags: int) -> Optional[bytes]:
        self.calls += 1
        wait_all = bool(flags & socket.MSG_WAITALL)
        while self.pending and (len(self.arrived) == self.taken
                                or (wait_all and len(self.arrived) - self.taken < size)):
            self.arrived += self.pending.pop(0)
        data = self.arrived[self.taken:self.taken + size]
        if not flags & socket.MSG_PEEK:
            self.taken += len(data)
        return data

    def rest(self) -> bytes:
        return self.arrived[self.taken:] + b"".join(self.pending)


class TakeProxyHeaderTests(unittest.TestCase):
    def test_exactly_the_header_is_taken(self) -> None:
        for header, client in ((V1, "192.0.2.7"), (v2(addresses=ipv4("203.0.113.5")),
                                                    "203.0.113.5")):
            with self.subTest(header=header):
                stream = Stream([header + GET])
                go_on, carried, _ = take_proxy_header(stream.receive, "any", True)
                self.assertEqual((go_on, carried), (True, client))
                self.assertEqual(stream.rest(), GET)

    def test_a_header_split_across_packets_is_waited_for_without_spinning(self) -> None:
        header = v2(addresses=ipv4())
        for pieces in ([V1[:3], V1[3:20], V1[20:] + GET], [header[:5], header[5:17],
                                                          header[17:] + GET]):
            with self.subTest(pieces=pieces):
                stream = Stream(pieces)
                go_on, carried, _ = take_proxy_header(stream.receive, "any", True)
                self.assertTrue(go_on)
                self.assertEqual(carried, "192.0.2.7")
                self.assertEqual(stream.rest(), GET)
                self.assertLessEqual(stream.calls, 3 * len(pieces) + 2)

    def test_a_peer_that_leaves_inside_the_header_ends_the_connection(self) -> None:
        stream = Stream([V1[:20]])
        self.assertEqual(take_proxy_header(stream.receive, "any", True)[:2], (False, None))

    def test_trusted_peer_without_a_header_is_refused(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            take_proxy_header(Stream([GET]).receive, "any", True)
        self.assertEqual((caught.exception.status, caught.exception.close), (400, True))

    def test_untrusted_peer_may_not_send_a_header(self) -> None:
        for header in (V1, v2(addresses=ipv4())):
            with self.subTest(header=header):
                with self.assertRaises(HTTPError) as caught:
                    take_proxy_header(Stream([header + GET]).receive, "any", False)
                self.assertEqual(caught.exception.status, 400)

    def test_untrusted_peer_without_a_header_is_left_untouched(self) -> None:
        stream = Stream([GET[:4], GET[4:]])
        self.assertEqual(take_proxy_header(stream.receive, "any", False), (True, None, b""))
        self.assertEqual(stream.rest(), GET)


if __name__ == "__main__":
    unittest.main()
