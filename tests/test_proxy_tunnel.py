"""CONNECT through the real server: TLS sessions carried end to end, bytes both ways, the log
line of a tunnel, refusals, and tunnels inside an HTTPS connection to Nex."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

from tests.support import (SOCKET_TIMEOUT, NexServer, RawOrigin, client_context, duplex,
                           free_port, make_certificate, make_root, ok, proxy_settings,
                           requires_openssl)
from tests.support import EchoOrigin, open_tunnel, read_head, receive_exactly

CURL = shutil.which("curl")








@requires_openssl
class TunnelTestCase(unittest.TestCase):
    """A TLS origin, an echo origin and a refused port, and a Nex allowed to tunnel to
    them; ``tls`` makes Nex itself speak HTTPS."""

    tls = False

    @classmethod
    def setUpClass(cls) -> None:
        cls.folder = tempfile.mkdtemp(prefix="nex-tunnel-")
        cls.addClassCleanup(shutil.rmtree, cls.folder, True)
        cls.root = make_root()
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        cls.certificate, key = make_certificate(cls.folder, "origin")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cls.certificate, key)
        cls.tls_origin = RawOrigin(lambda exchange: ok(b"secret over TLS"), context)
        cls.addClassCleanup(cls.tls_origin.close)
        cls.echo = EchoOrigin()
        cls.addClassCleanup(cls.echo.close)
        cls.closed_port = free_port()
        # Never accepts: the kernel completes each connection, and nothing ever answers.
        cls.silent = socket.create_server(("127.0.0.1", 0), backlog=16)
        cls.addClassCleanup(cls.silent.close)
        cls.silent_port = cls.silent.getsockname()[1]
        ports = (f"{cls.tls_origin.port}, {cls.echo.port}, {cls.closed_port},"
                 f" {cls.silent_port}")
        cls.server = NexServer(cls.root, proxy_settings(connect_ports=ports), tls=cls.tls)
        cls.addClassCleanup(cls.server.stop)
        cls.server.start()

    def connect(self) -> socket.socket:
        sock = self.server.connect_tls() if self.tls else self.server.connect()
        self.addCleanup(sock.close)
        return sock

    def open_tunnel(self, port: int, early: bytes = b"") -> socket.socket:
        """A connection to Nex on which ``CONNECT 127.0.0.1:port`` succeeded; ``early``
        goes in the same send as the CONNECT head."""
        sock = self.connect()
        head = open_tunnel(sock, port, early)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertNotIn(b"Content-Length", head)
        self.assertNotIn(b"Transfer-Encoding", head)
        return sock

    def tunnel_line(self, target: str) -> re.Match:
        """The access line of the tunnel to ``target``, once the tunnel has ended."""
        pattern = re.compile(rf'"CONNECT {re.escape(target)} HTTP/1\.[01]" 200 (\d+) .* '
                             rf'up=(\d+) down=(\d+)$', re.MULTILINE)
        log = self.server.wait_for_access_log(lambda text: pattern.search(text) is not None)
        match = pattern.search(log)
        self.assertIsNotNone(match, log)
        return match


class SharedTunnelTests:
    """The tests both kinds of Nex pass, plain and HTTPS."""

    def test_echo_both_ways_with_early_bytes_and_the_log_line(self) -> None:
        data = os.urandom(1024 * 1024)
        sock = self.open_tunnel(self.echo.port, early=b"early")
        self.assertEqual(receive_exactly(sock, 5), b"early")
        self.assertEqual(duplex(sock, data, len(data)), data)
        sock.close()
        match = self.tunnel_line(f"127.0.0.1:{self.echo.port}")
        size = len(data) + 5
        self.assertEqual(match.groups(), (str(size), str(size), str(size)))

    def test_closed_tunnel_to_a_silent_origin_ends_within_seconds(self) -> None:
        # Issue: the tunnel, its thread and the client's slot lived on until tunnel_idle.
        sock = self.open_tunnel(self.silent_port)
        sock.close()
        line = f'"CONNECT 127.0.0.1:{self.silent_port} HTTP/1.1" 200 - '
        log = self.server.wait_for_access_log(lambda text: line in text)
        self.assertRegex(log, "(?m)" + re.escape(line) + ".* up=0 down=0$")

    def test_refused_destination_is_502_and_logged(self) -> None:
        sock = self.connect()
        sock.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % self.closed_port)
        self.assertTrue(read_head(sock).startswith(b"HTTP/1.1 502 "))
        self.server.wait_for_access_log(
            lambda text: f'"CONNECT 127.0.0.1:{self.closed_port} HTTP/1.1" 502 ' in text)
        self.assertIn(f'"CONNECT 127.0.0.1:{self.closed_port} HTTP/1.1" 502 ',
                      self.server.access_log())

    def test_port_outside_connect_ports_is_403(self) -> None:
        sock = self.connect()
        sock.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % free_port())
        self.assertTrue(read_head(sock).startswith(b"HTTP/1.1 403 "))


class PlainTunnelTest(SharedTunnelTests, TunnelTestCase):
    def test_http_client_set_tunnel_carries_a_tls_session(self) -> None:
        connection = http.client.HTTPSConnection(self.server.host, self.server.port,
                                                 timeout=SOCKET_TIMEOUT,
                                                 context=client_context(self.certificate))
        connection.set_tunnel("localhost", self.tls_origin.port)
        connection.request("GET", "/secure")
        response = connection.getresponse()
        self.assertEqual((response.status, response.read()), (200, b"secret over TLS"))
        peer = connection.sock.getpeercert()  # the origin's certificate, through the tunnel
        self.assertIn(("DNS", "localhost"), peer["subjectAltName"])
        connection.close()
        exchange = self.tls_origin.received[-1]
        self.assertEqual(exchange.target, "/secure")
        self.assertEqual(exchange.values("Host"), [f"localhost:{self.tls_origin.port}"])
        match = self.tunnel_line(f"localhost:{self.tls_origin.port}")
        size, up, down = map(int, match.groups())
        self.assertEqual(size, down)
        self.assertGreater(up, 0)
        self.assertGreater(down, len(b"secret over TLS"))


class TunnelOverHTTPSTest(SharedTunnelTests, TunnelTestCase):
    """Nex serving HTTPS: the tunnel runs inside the client's TLS connection to Nex."""

    tls = True

    @unittest.skipIf(CURL is None, "curl is not installed")
    def test_curl_through_an_https_proxy_to_a_tls_origin(self) -> None:
        # TLS inside TLS: curl's session with the origin rides in its session with Nex.
        result = subprocess.run(
            [CURL, "--silent", "--show-error", "--max-time", str(int(SOCKET_TIMEOUT)),
             "--proxy", f"https://localhost:{self.server.port}",
             "--proxy-cacert", self.server.certificate_path, "--cacert", self.certificate,
             f"https://localhost:{self.tls_origin.port}/via-curl"],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=SOCKET_TIMEOUT,
            env={**os.environ, "NO_PROXY": "", "no_proxy": ""})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, b"secret over TLS")
        self.tunnel_line(f"localhost:{self.tls_origin.port}")


if __name__ == "__main__":
    unittest.main()
