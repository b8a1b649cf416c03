"""QR codes of Nex's address: in the terminal at start-up, and behind the listing's button."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

from nex import qrcode
from nex.files.templates import TemplateSet
from nex.http.errors import HTTPError
from nex.process.config import load_config
from nex.process.interfaces import lan_address
from nex.site.hosts import HostValidator
from nex.site.routing import Dispatcher
from tests.support import REPO, START_TIMEOUT, NexServer, ResponseReader
from tests.support import make_request

WITHOUT_SEGNO = mock.patch.dict(sys.modules, {"segno": None})


class QrCodeTest(unittest.TestCase):
    def test_terminal_draws_blocks(self) -> None:
        lines = qrcode.terminal("http://192.0.2.7:8080/").splitlines()
        self.assertGreater(len(lines), 10)
        self.assertEqual(len({len(line) for line in lines}), 1)
        self.assertTrue(set("".join(lines)) <= set(" \u2580\u2584\u2588"))

    def test_svg(self) -> None:
        image = qrcode.svg("http://192.0.2.7:8080/")
        self.assertTrue(image.startswith(b"<svg"), image[:40])
        self.assertNotIn(b"192.0.2.7", image)  # the address is in the modules, not in text

    def test_without_segno_one_line_says_how(self) -> None:
        with WITHOUT_SEGNO:
            self.assertEqual(qrcode.terminal("http://192.0.2.7:8080/"), qrcode.INSTALL_HINT)
            self.assertIsNone(qrcode.svg("http://192.0.2.7:8080/"))
        self.assertEqual(qrcode.INSTALL_HINT.count("\n"), 0)
        self.assertIn("pip install segno", qrcode.INSTALL_HINT)


class ListingQrTest(unittest.TestCase):
    """``FOLDER/?qr``: the folder's address, on the LAN when the page was reached on loopback."""

    def setUp(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-qr-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        os.mkdir(os.path.join(root, "photos"))
        config = load_config(None, {"document_root": root,
                                    "error_pages": os.path.join(REPO, "error_pages"),
                                    "templates": os.path.join(REPO, "other_templates")})
        templates = TemplateSet.load(config.error_pages, config.templates)
        self.site = Dispatcher(config, templates, HostValidator(["*"]), "sig", port=8123,
                               lan_address="192.0.2.7")

    def qr(self, host: str) -> bytes:
        response = self.site.respond(make_request("GET", "/photos/?qr", host), None, "::1")
        self.assertEqual(dict(response.headers)["Content-Type"], "image/svg+xml")
        return response.body[0]

    def test_loopback_pages_get_the_lan_address(self) -> None:
        for host in ("localhost:8123", "127.0.0.1:8123", "[::1]:8123"):
            with self.subTest(host=host):
                self.assertEqual(self.qr(host), qrcode.svg("http://192.0.2.7:8123/photos/"))

    def test_other_hosts_keep_theirs(self) -> None:
        self.assertEqual(self.qr("files.example:8123"),
                         qrcode.svg("http://files.example:8123/photos/"))

    def test_without_segno_501_says_how(self) -> None:
        with WITHOUT_SEGNO, self.assertRaises(HTTPError) as raised:
            self.site.respond(make_request("GET", "/photos/?qr"), None, "::1")
        self.assertEqual(raised.exception.status, 501)
        self.assertIn("pip install segno", raised.exception.detail)

    def test_over_http(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-qr-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        with NexServer(root) as server, server.connect() as sock:
            sock.sendall(b"GET /?qr HTTP/1.1\r\nHost: files.example\r\n\r\n")
            status, headers, body = ResponseReader(sock).read()
        self.assertEqual((status, headers["content-type"]), (200, "image/svg+xml"))
        self.assertEqual(body, qrcode.svg("http://files.example/"))


class StartUpQrTest(unittest.TestCase):
    """With a wildcard bind and a terminal, the start-up lines end with the LAN address's code."""

    def test_terminal_shows_the_code_of_the_lan_address(self) -> None:
        address = lan_address("0.0.0.0")
        if not address:
            self.skipTest("this machine has no address other than loopback")
        for extra in ([], ["--workers", "2"]):
            with self.subTest(extra=extra):
                text = self.start_on_a_terminal(extra)
                match = re.search(r"Scan to open (http://\S+) on a phone:\r?\n", text)
                self.assertIsNotNone(match, text)
                self.assertIn(address, match.group(1))
                self.assertIn(qrcode.terminal(match.group(1)).replace("\n", "\r\n"), text)

    def start_on_a_terminal(self, extra) -> str:
        """What Nex bound to 0.0.0.0 writes to a terminal until its QR code is complete."""
        root = tempfile.mkdtemp(prefix="nex-qr-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "server.py"), "--root", root, "--port", "0",
             "--bind", "0.0.0.0", *extra], stdout=follower, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, cwd=root)
        os.close(follower)
        output = b""
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline and output.count("\u2580".encode()) < 10:
                ready, _, _ = select.select([leader], [], [], 0.5)
                if ready:
                    try:
                        output += os.read(leader, 65536)
                    except OSError:
                        break
        finally:
            process.terminate()
            process.wait(START_TIMEOUT)
            os.close(leader)
        return output.decode("utf-8", "replace")

if __name__ == "__main__":
    unittest.main()
