"""The client address behind trusted proxies: unit tests and one over a real socket."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest

from nex.site.clients import ForwardedFor
from tests.support import NexServer, ResponseReader


class ForwardedForTest(unittest.TestCase):
    def setUp(self):
        self.forwarded = ForwardedFor(["10.0.0.0/8", "::1"])

    def test_trusted_proxy_names_the_client(self):
        self.assertEqual(self.forwarded.client("10.1.2.3", "203.0.113.9"), "203.0.113.9")

    def test_trusted_hops_are_skipped_from_the_right(self):
        self.assertEqual(self.forwarded.client("10.1.2.3", "198.51.100.7, 10.9.9.9"),
                         "198.51.100.7")
        self.assertEqual(self.forwarded.client("::1", "2001:db8::5, 10.0.0.2"), "2001:db8::5")

    def test_untrusted_peer_cannot_forge_its_address(self):
        self.assertEqual(self.forwarded.client("192.0.2.1", "203.0.113.9"), "192.0.2.1")

    def test_client_spoofing_left_of_the_real_hop_is_ignored(self):
        # The client wrote "1.2.3.4"; the proxy appended the address it really saw.
        self.assertEqual(self.forwarded.client("10.1.2.3", "1.2.3.4, 198.51.100.7"),
                         "198.51.100.7")

    def test_malformed_list_falls_back_to_the_peer(self):
        for value in ("", "not-an-ip", "203.0.113.9, <script>", "203.0.113.9\r\nX: y"):
            with self.subTest(value=value):
                self.assertEqual(self.forwarded.client("10.1.2.3", value), "10.1.2.3")

    def test_all_hops_trusted_gives_the_peer(self):
        self.assertEqual(self.forwarded.client("10.1.2.3", "10.4.4.4"), "10.1.2.3")

    def test_without_the_header_the_peer_is_the_client(self):
        self.assertEqual(self.forwarded.client("10.1.2.3", None), "10.1.2.3")

    def test_no_trusted_proxies_believes_nobody(self):
        self.assertEqual(ForwardedFor([]).client("10.1.2.3", "203.0.113.9"), "10.1.2.3")


class ForwardedLogTest(unittest.TestCase):
    def test_access_log_names_the_client_a_trusted_proxy_forwarded_for(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        with open(os.path.join(root, "a.txt"), "wb") as f:
            f.write(b"a")
        settings = {"logging": {"trusted_proxies": "127.0.0.1"}}
        with NexServer(root, settings=settings) as server:
            with server.connect() as sock:
                reader = ResponseReader(sock)
                sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n"
                             b"X-Forwarded-For: 203.0.113.9\r\n\r\n")
                self.assertEqual(reader.read()[0], 200)
                sock.sendall(b"GET /a.txt?plain HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(reader.read()[0], 200)
            log = server.wait_for_access_log(lambda text: text.count("\n") >= 2)
        lines = log.splitlines()
        self.assertTrue(lines[0].startswith("203.0.113.9 - - ["), lines)
        self.assertTrue(lines[1].startswith("127.0.0.1 - - ["), lines)


if __name__ == "__main__":
    unittest.main()
