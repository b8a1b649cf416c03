"""The flags of python3 -m http.server, and --proxy-allow for trying the proxy locally."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from typing import List

from nex.process.cli import allow_destinations
from tests.support import RawOrigin, ok
from tests.support import NexServer, ResponseReader
from tests.support.settings import run


class HttpServerHabitTests(unittest.TestCase):
    """``python3 server.py 8000``, ``-b``, ``-d`` and ``-p`` mean what http.server means."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-habits-")
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)

    def config(self, argv: List[str]):
        status, out, err, config = run(argv)
        self.assertEqual((status, err), (0, ""))
        return config

    def test_positional_port(self) -> None:
        self.assertEqual(self.config(["8000"]).port, 8000)

    def test_positional_port_agreeing_with_port_flag(self) -> None:
        self.assertEqual(self.config(["8000", "--port", "8000"]).port, 8000)

    def test_positional_port_disagreeing_with_port_flag(self) -> None:
        status, out, err, config = run(["8000", "--port", "9000"])
        self.assertEqual((status, out, config), (2, "", None))
        self.assertEqual(err, "nex: the port is given twice, as 8000 and as --port 9000;"
                              " give it once\n")

    def test_positional_port_is_checked_like_the_flag(self) -> None:
        status, _, err, config = run(["70000"])
        self.assertEqual((status, config), (2, None))
        self.assertEqual(err, "nex: --port 70000: must be an integer from 0 to 65535\n")

    def test_b_binds(self) -> None:
        self.assertEqual(self.config(["-b", "::1"]).bind, "::1")

    def test_d_and_directory_name_the_folder(self) -> None:
        for flag in ("-d", "--directory", "--root"):
            with self.subTest(flag=flag):
                self.assertEqual(self.config([flag, self.folder]).document_root,
                                 os.path.realpath(self.folder))

    def test_p_http_1_1_is_what_nex_speaks(self) -> None:
        self.assertEqual(self.config(["-p", "HTTP/1.1", "8000"]).port, 8000)

    def test_p_with_another_version_is_refused(self) -> None:
        status, out, err, config = run(["-p", "HTTP/1.0"])
        self.assertEqual((status, out, config), (2, "", None))
        self.assertEqual(err, "nex: -p HTTP/1.0: -p names the HTTP version, as in python3 -m"
                              " http.server, and Nex speaks HTTP/1.1 only\n")

    def test_p_with_a_port_says_how_to_give_the_port(self) -> None:
        status, _, err, config = run(["-p", "8000"])
        self.assertEqual((status, config), (2, None))
        self.assertIn("to listen on port 8000, give it as 8000 or --port 8000", err)


class AllowDestinationsTests(unittest.TestCase):
    """--proxy-allow takes networks out of [proxy] denied_destinations."""

    def test_one_address_out_of_a_network(self) -> None:
        remaining = allow_destinations(("127.0.0.0/8", "::1"), ("127.0.0.1",))
        self.assertIn("::1/128", remaining)
        self.assertNotIn("127.0.0.0/8", remaining)
        self.assertIn("127.0.0.0/32", remaining)
        self.assertIn("127.0.0.2/31", remaining)
        self.assertIn("127.128.0.0/9", remaining)
        self.assertFalse(any(network.startswith("127.0.0.1/") for network in remaining))

    def test_a_whole_network(self) -> None:
        self.assertEqual(allow_destinations(("127.0.0.0/8", "::1"), ("127.0.0.0/8", "::1")), ())

    def test_a_larger_network_removes_the_smaller(self) -> None:
        self.assertEqual(allow_destinations(("10.1.0.0/16", "fe80::/10"), ("10.0.0.0/8",)),
                         ("fe80::/10",))

    def test_an_unrelated_network_changes_nothing(self) -> None:
        self.assertEqual(allow_destinations(("127.0.0.0/8",), ("192.0.2.0/24", "::1")),
                         ("127.0.0.0/8",))

    def test_through_the_command_line(self) -> None:
        status, _, err, config = run(["--proxy", "--proxy-allow", "127.0.0.1",
                                      "--proxy-allow", "::1"])
        self.assertEqual((status, err), (0, ""))
        self.assertNotIn("::1", config.proxy_denied_destinations)
        self.assertIn("169.254.0.0/16", config.proxy_denied_destinations)

    def test_a_bad_network_is_refused(self) -> None:
        status, _, err, config = run(["--proxy-allow", "localhost"])
        self.assertEqual((status, config), (2, None))
        self.assertEqual(err, "nex: --proxy-allow: 'localhost' is not an IP address or network"
                              " (10.0.0.0/8)\n")


class ProxyAllowLiveTests(unittest.TestCase):
    """Over real sockets: a loopback origin is refused by default, naming the setting, and
    reached with --proxy-allow."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-habits-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.origin = RawOrigin(lambda exchange: ok(b"from the origin"))
        self.addCleanup(self.origin.close)

    def fetch(self, extra: List[str]):
        server = NexServer(self.root)
        server.args += ["--proxy"] + extra
        with server:
            with server.connect() as sock:
                sock.sendall(f"GET {self.origin.url('/')} HTTP/1.1\r\nHost: 127.0.0.1:"
                             f"{self.origin.port}\r\nAccept: text/plain\r\n\r\n"
                             .encode("ascii"))
                return ResponseReader(sock).read()

    def test_loopback_origin_is_refused_naming_denied_destinations(self) -> None:
        status, _, body = self.fetch([])
        self.assertEqual(status, 403)
        self.assertIn(b"denied_destinations", body)
        self.assertEqual(self.origin.connections, 0)

    def test_proxy_allow_reaches_a_loopback_origin(self) -> None:
        status, _, body = self.fetch(["--proxy-allow", "127.0.0.1"])
        self.assertEqual((status, body), (200, b"from the origin"))


if __name__ == "__main__":
    unittest.main()
