"""PROXY protocol v1/v2 in front of the real server: the carried client is the client for
logs, caps, login failure limits and the proxy's allowed_clients; only trusted proxies may
send a header; it comes before TLS."""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import tempfile
import unittest

from nex.process.config import ConfigError, load_config
from tests.support import NexServer, ResponseReader, exchange, requires_openssl, \
    client_context
from tests.support.access import write_users
from tests.support.proxy_headers import ipv4, ipv6, tlv, v2

GET = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"


def v1_for(client: str) -> bytes:
    return f"PROXY TCP4 {client} 198.51.100.1 40000 80\r\n".encode()


class ProxyProtocolServerTest(unittest.TestCase):
    settings = {"server": {"proxy_protocol": "any"},
                "logging": {"trusted_proxies": "127.0.0.1"}}
    server_options = {}

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp(prefix="nex-pp-")
        with open(os.path.join(cls.root, "hello.txt"), "w") as out:
            out.write("hello\n")
        cls.server = NexServer(cls.root, cls.settings, **cls.server_options).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def send(self, data: bytes) -> bytes:
        with self.server.connect() as sock:
            return exchange(sock, data)

    def logged(self, marker: str) -> str:
        """The access line holding ``marker``."""
        log = self.server.wait_for_access_log(lambda text: marker in text)
        return next(line for line in log.splitlines() if marker in line)


class TrustedProxyTest(ProxyProtocolServerTest):
    def test_version_1_client_is_logged(self) -> None:
        answer = self.send(V1 + GET.replace(b"hello.txt", b"hello.txt?v1"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:40])
        self.assertTrue(answer.endswith(b"hello\n"))
        self.assertTrue(self.logged("?v1 ").startswith("192.0.2.7 - - ["))

    def test_version_2_client_is_logged_and_tlvs_are_skipped(self) -> None:
        header = v2(family=0x21, addresses=ipv6(), tlvs=tlv(0x01, b"http/1.1") + tlv(0xEE, b"z"))
        answer = self.send(header + GET.replace(b"hello.txt", b"hello.txt?v2"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:40])
        self.assertTrue(self.logged("?v2 ").startswith("2001:db8::7 - - ["))

    def test_local_header_keeps_the_balancer_address(self) -> None:
        answer = self.send(v2(command=0x20, family=0x00) + GET.replace(b"hello.txt",
                                                                         b"hello.txt?local"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:40])
        self.assertTrue(self.logged("?local ").startswith("127.0.0.1 - - ["))

    def test_header_split_across_packets(self) -> None:
        with self.server.connect() as sock:
            header = v1_for("203.0.113.9")
            sock.sendall(header[:9])
            sock.sendall(header[9:30])
            sock.sendall(header[30:] + GET.replace(b"hello.txt", b"hello.txt?split"))
            answer = ResponseReader(sock).read()
        self.assertEqual(answer[0], 200)
        self.assertTrue(self.logged("?split ").startswith("203.0.113.9 - - ["))

    def test_keep_alive_requests_all_belong_to_the_carried_client(self) -> None:
        with self.server.connect() as sock:
            sock.sendall(v1_for("198.51.100.77")
                         + b"GET /hello.txt?ka1 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(ResponseReader(sock).read()[0], 200)
            sock.sendall(b"GET /hello.txt?ka2 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(ResponseReader(sock).read()[0], 200)
        self.assertTrue(self.logged("?ka2 ").startswith("198.51.100.77 - - ["))

    def test_missing_header_from_a_trusted_proxy_is_400(self) -> None:
        answer = self.send(GET)
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:40])
        self.assertIn(b"PROXY protocol header", answer)

    def test_malformed_header_is_400_and_closes(self) -> None:
        for bad in (b"PROXY TCP4 192.0.2.7 198.51.100.1 99999 80\r\n",
                    v2(family=0x12, addresses=ipv4()),
                    v2(addresses=ipv4(), tlvs=b"\x01\x00\x09ab")):
            with self.subTest(bad=bad):
                answer = self.send(bad + GET)
                self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:40])
                self.assertIn(b"Connection: close", answer)

    def test_a_carried_address_may_not_claim_to_be_trusted_through_x_forwarded_for(self) -> None:
        # The carried client is not a trusted proxy: its X-Forwarded-For is not believed.
        request = GET.replace(b"hello.txt", b"hello.txt?xff").replace(
            b"Host: x\r\n", b"Host: x\r\nX-Forwarded-For: 10.9.9.9\r\n")
        self.assertTrue(self.send(v1_for("192.0.2.44") + request).startswith(b"HTTP/1.1 200"))
        self.assertTrue(self.logged("?xff ").startswith("192.0.2.44 - - ["))


class OnlyVersion1Test(ProxyProtocolServerTest):
    settings = {"server": {"proxy_protocol": "v1"},
                "logging": {"trusted_proxies": "127.0.0.1"}}

    def test_version_2_header_is_refused(self) -> None:
        answer = self.send(v2(addresses=ipv4()) + GET)
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:40])

    def test_version_1_header_is_taken(self) -> None:
        self.assertTrue(self.send(V1 + GET).startswith(b"HTTP/1.1 200 "))


class UntrustedPeerTest(ProxyProtocolServerTest):
    """127.0.0.1 is not a trusted proxy here: it may not name another client."""

    settings = {"server": {"proxy_protocol": "any"},
                "logging": {"trusted_proxies": "192.0.2.1"}}

    def test_untrusted_peer_cannot_spoof_its_address_with_a_proxy_header(self) -> None:
        for header in (V1, v2(addresses=ipv4())):
            with self.subTest(header=header):
                answer = self.send(header + GET)
                self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), answer[:40])
                self.assertIn(b"only from a trusted proxy", answer)
                self.assertIn(b"Connection: close", answer)
        log = self.server.wait_for_access_log(lambda text: text.count(" 400 ") >= 2)
        self.assertNotIn("192.0.2.7", log)

    def test_untrusted_peer_without_header_is_served(self) -> None:
        self.assertTrue(self.send(GET).startswith(b"HTTP/1.1 200 "))


class PerClientCapTest(ProxyProtocolServerTest):
    settings = {"server": {"proxy_protocol": "v1", "max_connections_per_client": 1},
                "logging": {"trusted_proxies": "127.0.0.1"}}

    def test_per_client_cap_counts_the_carried_client_not_the_balancer(self) -> None:
        with self.server.connect() as held:
            held.sendall(v1_for("192.0.2.50") + b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(ResponseReader(held).read()[0], 200)  # 192.0.2.50 holds one
            second = self.send(v1_for("192.0.2.50") + GET)
            self.assertTrue(second.startswith(b"HTTP/1.1 429 "), second[:40])
            # The same refusal as a client over its cap at accept gets.
            self.assertIn(b"\r\nRetry-After: 5\r\n", second.split(b"\r\n\r\n")[0] + b"\r\n")
            other = self.send(v1_for("192.0.2.51") + GET)
            self.assertTrue(other.startswith(b"HTTP/1.1 200 "), other[:40])
        self.assertRegex(self.logged(" 429 "),
                         r"^192\.0\.2\.50 .* reason=max_connections_per_client$")


class LoginLimitTest(ProxyProtocolServerTest):
    @classmethod
    def setUpClass(cls) -> None:
        cls.folder = tempfile.mkdtemp(prefix="nex-pp-users-")
        users = os.path.join(cls.folder, "users")
        write_users(users, {"alice": "secret"})
        cls.settings = {"server": {"proxy_protocol": "v1"},
                        "logging": {"trusted_proxies": "127.0.0.1"},
                        "auth": {"users_file": users, "max_failures_per_minute": 1}}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        shutil.rmtree(cls.folder, ignore_errors=True)

    def test_login_failure_limit_counts_the_carried_client(self) -> None:
        wrong = GET.replace(b"Host: x\r\n", b"Host: x\r\nAuthorization: Basic "
                            + base64.b64encode(b"alice:wrong") + b"\r\n")
        statuses = [self.send(v1_for("192.0.2.60") + wrong)[9:12] for _ in range(3)]
        self.assertEqual(statuses[0], b"401")
        self.assertIn(b"429", statuses)
        # Another client behind the same balancer is not locked out.
        self.assertEqual(self.send(v1_for("192.0.2.61") + wrong)[9:12], b"401")


class ForwardProxyClientTest(ProxyProtocolServerTest):
    settings = {"server": {"proxy_protocol": "v1"},
                "logging": {"trusted_proxies": "127.0.0.1"},
                "proxy": {"enabled": "yes", "allowed_clients": "192.0.2.0/24"}}

    def test_proxy_allowed_clients_judges_the_carried_client(self) -> None:
        connect = b"CONNECT example.invalid:25 HTTP/1.1\r\nHost: example.invalid:25\r\n\r\n"
        outside = self.send(v1_for("198.51.100.5") + connect)
        self.assertIn(b"This proxy does not serve your address", outside)
        inside = self.send(v1_for("192.0.2.5") + connect)
        self.assertTrue(inside.startswith(b"HTTP/1.1 "), inside[:40])
        self.assertNotIn(b"This proxy does not serve your address", inside)  # past that check


@requires_openssl
class BeforeTlsTest(ProxyProtocolServerTest):
    server_options = {"tls": True}

    def test_header_comes_before_the_handshake(self) -> None:
        sock = self.server.connect()
        try:
            sock.sendall(v2(addresses=ipv4("192.0.2.99")))
            context = client_context(self.server.certificate_path)
            with context.wrap_socket(sock, server_hostname="localhost") as tls:
                answer = exchange(tls, GET.replace(b"hello.txt", b"hello.txt?tls"))
        finally:
            sock.close()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:40])
        self.assertTrue(self.logged("?tls ").startswith("192.0.2.99 - - ["))


class SettingTest(unittest.TestCase):
    def test_proxy_protocol_needs_trusted_proxies(self) -> None:
        with self.assertRaisesRegex(ConfigError, r"^\[server\] proxy_protocol = v2 needs "
                                                 r"\[logging\] trusted_proxies"):
            load_config(None, {"proxy_protocol": "v2"})

    def test_bad_value_names_the_choices(self) -> None:
        with self.assertRaisesRegex(ConfigError, r"--proxy-protocol v3: "):
            load_config(None, {"proxy_protocol": "v3", "trusted_proxies": "127.0.0.1"})


if __name__ == "__main__":
    unittest.main()


@requires_openssl
class PerClientCapTlsTest(ProxyProtocolServerTest):
    """Over TLS a carried client at its cap is closed without a page, as at accept."""

    settings = {"server": {"proxy_protocol": "v2", "max_connections_per_client": 1},
                "logging": {"trusted_proxies": "127.0.0.1"}}
    server_options = {"tls": True}

    def test_carried_client_at_its_cap_is_closed_and_logged(self) -> None:
        context = client_context(self.server.certificate_path)
        held = self.server.connect()
        self.addCleanup(held.close)
        held.sendall(v2(addresses=ipv4("192.0.2.70")))
        with context.wrap_socket(held, server_hostname="localhost") as tls:
            tls.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(ResponseReader(tls).read()[0], 200)
            second = self.server.connect()
            self.addCleanup(second.close)
            second.sendall(v2(addresses=ipv4("192.0.2.70")))
            with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
                context.wrap_socket(second, server_hostname="localhost")
        self.assertRegex(self.logged(" 429 "),
                         r"^192\.0\.2\.70 .* reason=max_connections_per_client$")
