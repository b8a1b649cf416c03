"""The forward proxy's defences on the wire: who may use it, where it may go, what it passes on.

Admission (client networks, proxy login, blacklist before DNS, denied destinations against
SSRF, loops), request smuggling, hop-by-hop fields both ways, and the requests the proxy
answers itself (``Max-Forwards: 0``).  Each smuggling test asserts what the origin received.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import threading
import unittest
import urllib.error
import urllib.request
from unittest import mock

from tests.support import (SOCKET_TIMEOUT, ProxyTestCase, free_port, ok, parse_replies,
                           proxy_settings)
from tests.support.access import make_users, write_users

CLOSE = b"Connection: close\r\n"


class BlacklistTest(ProxyTestCase):
    settings = proxy_settings(blacklist="blocked.invalid, example.test, 198.51.100.0/24")

    def test_a_listed_name_is_403_without_a_dns_look_up(self) -> None:
        # A look-up of a .invalid name fails (502): a 403 means none was made.
        response, body = self.fetch("GET", "http://blocked.invalid/")
        self.assertEqual(response.status, 403)
        self.log_has('"GET http://blocked.invalid/ HTTP/1.1" 403 ')

    def test_names_below_a_listed_domain_are_refused_on_label_boundaries(self) -> None:
        for url, status in (("http://example.test/", 403), ("http://www.example.test:81/", 403),
                            ("http://EXAMPLE.TEST./", 403), ("http://a.b.example.test/x", 403),
                            ("http://notexample.test/", 502),
                            ("http://example.test.invalid/", 502)):
            with self.subTest(url=url):
                self.assertEqual(self.fetch("GET", url)[0].status, status)

    def test_a_listed_network_is_refused(self) -> None:
        self.assertEqual(self.fetch("GET", "http://198.51.100.7/")[0].status, 403)

    def test_connect_to_a_listed_name_is_403(self) -> None:
        reply, = parse_replies(self.raw(b"CONNECT blocked.invalid:443 HTTP/1.1\r\n"
                                        b"Host: blocked.invalid:443\r\n" + CLOSE + b"\r\n"))
        self.assertEqual(reply.status, 403)


class DefaultDestinationsTest(ProxyTestCase):
    """The shipped ``denied_destinations`` keep clients away from this machine's services."""

    settings = {"proxy": {"enabled": "yes"}}

    def test_loopback_origins_are_refused_with_the_defaults(self) -> None:
        origin = self.origin(lambda exchange: ok(b"internal"))
        for url in (f"http://127.0.0.1:{origin.port}/", f"http://localhost:{origin.port}/",
                    f"http://[::ffff:127.0.0.1]:{origin.port}/", f"http://[::1]:{origin.port}/",
                    "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0:80/"):
            with self.subTest(url=url):
                self.assertEqual(self.fetch("GET", url)[0].status, 403)
        self.assertEqual(origin.connections, 0)

    def test_connect_to_a_port_outside_connect_ports_is_refused(self) -> None:
        reply, = parse_replies(self.raw(b"CONNECT 192.0.2.1:22 HTTP/1.1\r\n"
                                        b"Host: 192.0.2.1:22\r\n" + CLOSE + b"\r\n"))
        self.assertEqual(reply.status, 403)


class HttpPortsTest(ProxyTestCase):
    """The shipped ``http_ports`` keep forwarded requests away from mail and other servers."""

    settings = {"proxy": {"enabled": "yes"}}

    def test_plain_forwarding_to_the_smtp_port_is_refused_before_dns(self) -> None:
        # Issue: http://host:25/ carried a request body into an SMTP server.
        for url in ("http://mail.invalid:25/", "http://192.0.2.1:22/"):
            with self.subTest(url=url):
                response, body = self.fetch("POST", url, body=b"MAIL FROM:<x@example>\r\n")
                self.assertEqual(response.status, 403)  # a .invalid look-up would be 502
                self.assertIn(b"does not forward requests to port", body)

    def test_connect_to_a_refused_port_is_403_before_dns(self) -> None:
        # Issue: CONNECT x.invalid:25 made a DNS query and then answered 502.
        reply, = parse_replies(self.raw(b"CONNECT x.invalid:25 HTTP/1.1\r\n"
                                        b"Host: x.invalid:25\r\n" + CLOSE + b"\r\n"))
        self.assertEqual(reply.status, 403)


class AllowListTest(ProxyTestCase):
    settings = proxy_settings(allowed_destinations="127.0.0.1, allowed.invalid")

    def test_only_listed_destinations_are_reached(self) -> None:
        origin = self.origin(lambda exchange: ok(b"listed"))
        response, body = self.fetch("GET", origin.url("/"))
        self.assertEqual((response.status, body), (200, b"listed"))
        for url in ("http://192.0.2.1/", f"http://[::1]:{origin.port}/"):
            with self.subTest(url=url):
                response, body = self.fetch("GET", url)
                self.assertEqual(response.status, 403)
                self.assertIn(b"allow-list", body)
        # A listed name still has to resolve.
        self.assertEqual(self.fetch("GET", "http://allowed.invalid/")[0].status, 502)


class ForwardedForYesTest(ProxyTestCase):
    settings = proxy_settings(forwarded_for="yes")

    def test_the_client_address_is_added_after_what_it_sent(self) -> None:
        origin = self.origin(lambda exchange: ok())
        self.fetch("GET", origin.url("/"), headers={"X-Forwarded-For": "10.9.9.9"})
        exchange, = origin.received
        self.assertEqual(exchange.values("X-Forwarded-For"), ["10.9.9.9", "127.0.0.1"])
        self.assertEqual(exchange.values("Forwarded"), ["for=127.0.0.1"])


class ForwardedForDeleteTest(ProxyTestCase):
    settings = proxy_settings(forwarded_for="delete")

    def test_what_the_client_sent_is_removed(self) -> None:
        origin = self.origin(lambda exchange: ok())
        self.fetch("GET", origin.url("/"), headers={"X-Forwarded-For": "10.9.9.9",
                                                    "Forwarded": "for=10.9.9.9"})
        exchange, = origin.received
        self.assertEqual((exchange.values("X-Forwarded-For"), exchange.values("Forwarded")),
                         ([], []))


class UpstreamFailureLogTest(ProxyTestCase):
    def test_each_502_writes_one_error_line_saying_what_failed(self) -> None:
        url = f"http://127.0.0.1:{free_port()}/gone"
        self.assertEqual(self.fetch("GET", url)[0].status, 502)
        line = (f"proxy GET {url} for 127.0.0.1: 502 The origin server refused the"
                f" connection.")
        for _ in range(int(SOCKET_TIMEOUT / 0.05)):
            if line in self.server.error_log():
                break
            threading.Event().wait(0.05)
        self.assertEqual(self.server.error_log().count(line), 1)


class AllowedClientsTest(ProxyTestCase):
    settings = proxy_settings(allowed_clients="192.0.2.0/24")

    def test_other_clients_get_403_from_the_proxy_but_the_files_still(self) -> None:
        origin = self.origin(lambda exchange: ok())
        self.assertEqual(self.fetch("GET", origin.url())[0].status, 403)
        reply, = parse_replies(self.raw(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n"
                                        b"Host: 127.0.0.1:443\r\n" + CLOSE + b"\r\n"))
        self.assertEqual(reply.status, 403)
        response, body = self.fetch("GET", "/hello.txt", headers={"Host": "localhost"})
        self.assertEqual((response.status, body), (200, b"hello, world\n"))
        self.assertEqual(origin.connections, 0)

    def test_x_forwarded_for_does_not_make_a_client_allowed(self) -> None:
        origin = self.origin(lambda exchange: ok())
        response, _ = self.fetch("GET", origin.url(), headers={"X-Forwarded-For": "192.0.2.9"})
        self.assertEqual(response.status, 403)


class ProxyLoginTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.private = tempfile.mkdtemp(prefix="nex-proxy-users-")
        cls.settings = proxy_settings(auth=make_users(cls.private), auth_failures_per_minute=0)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        shutil.rmtree(cls.private, ignore_errors=True)

    def test_407_then_200_with_urllib(self) -> None:
        origin = self.origin(lambda exchange: ok(b"behind the login"))
        proxies = urllib.request.ProxyHandler({"http": self.server.url})
        login = urllib.request.ProxyBasicAuthHandler()
        login.add_password("Nex proxy at localhost", self.server.url, "alice", "wonderland")
        with mock.patch.dict(os.environ, {"no_proxy": "", "NO_PROXY": ""}):
            with self.assertRaises(urllib.error.HTTPError) as caught:
                urllib.request.build_opener(proxies).open(origin.url("/a"),
                                                          timeout=SOCKET_TIMEOUT)
            self.assertEqual(caught.exception.code, 407)
            self.assertEqual(caught.exception.headers["Proxy-Authenticate"],
                             'Basic realm="Nex proxy at localhost", charset="UTF-8"')
            caught.exception.close()
            opener = urllib.request.build_opener(proxies, login)
            with opener.open(origin.url("/b"), timeout=SOCKET_TIMEOUT) as reply:
                self.assertEqual(reply.read(), b"behind the login")
        exchange, = origin.received
        self.assertEqual(exchange.values("Proxy-Authorization"), [])  # hop-by-hop
        log = self.log_has(f'"GET {origin.url("/b")} HTTP/1.1" 200 ')
        self.assertIn("127.0.0.1 - alice [", log)
        self.assertIn(f'"GET {origin.url("/a")} HTTP/1.1" 407 ', log)

    def test_wrong_password_is_407(self) -> None:
        origin = self.origin(lambda exchange: ok())
        credentials = base64.b64encode(b"alice:Wonderland").decode()
        response, _ = self.fetch("GET", origin.url(),
                                 headers={"Proxy-Authorization": f"Basic {credentials}"})
        self.assertEqual(response.status, 407)
        self.assertEqual(origin.connections, 0)

    def test_files_need_no_proxy_login(self) -> None:
        response, body = self.fetch("GET", "/hello.txt", headers={"Host": "localhost"})
        self.assertEqual((response.status, body), (200, b"hello, world\n"))


class ProxyLockoutTest(ProxyTestCase):
    """``auth_failures_per_minute = 2``: every client of a loopback proxy shares one address."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.private = tempfile.mkdtemp(prefix="nex-proxy-users-")
        users = os.path.join(cls.private, "users")
        write_users(users, {"alice": "wonderland", "bob": "builder"})
        cls.settings = proxy_settings(auth=users, auth_failures_per_minute=2)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        shutil.rmtree(cls.private, ignore_errors=True)

    def as_user(self, url: str, user: str, password: str) -> int:
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
        return self.fetch("GET", url, headers={"Proxy-Authorization": f"Basic {credentials}"}
                          )[0].status

    def test_a_guesser_on_the_same_address_does_not_lock_out_another_user(self) -> None:
        # Issue: failures counted per address locked every local program out of the proxy.
        origin = self.origin(lambda exchange: ok(b"still open"))
        statuses = [self.as_user(origin.url(), "alice", "guess") for _ in range(3)]
        self.assertEqual(statuses, [407, 407, 429])
        self.assertEqual(self.as_user(origin.url(), "bob", "builder"), 200)
        self.assertEqual(self.as_user(origin.url(), "alice", "wonderland"), 429)


class LoopTest(ProxyTestCase):
    def pseudonym(self) -> str:
        """This Nex's received-by name, as an origin sees it in Via."""
        origin = self.origin(lambda exchange: ok(exchange.values("Via")[0].encode()))
        via = self.fetch("GET", origin.url())[1].decode()
        self.assertRegex(via, r"^1\.1 nex-[0-9a-f]{16}$")
        return via.split()[1]

    def test_own_address_and_port_with_own_via_is_508(self) -> None:
        pseudonym = self.pseudonym()
        for url in (f"http://127.0.0.1:{self.server.port}/hello.txt",
                    f"http://localhost:{self.server.port}/hello.txt",
                    "http://elsewhere.test/"):
            with self.subTest(url=url):
                response, _ = self.fetch("GET", url,
                                         headers={"Via": f"1.0 upstream, 1.1 {pseudonym}"})
                self.assertEqual(response.status, 508)

    def test_own_name_and_port_are_served_as_files(self) -> None:
        for url in (f"http://localhost:{self.server.port}/hello.txt",
                    f"http://127.0.0.1:{self.server.port}/hello.txt",
                    f"http://LOCALHOST.:{self.server.port}/hello.txt"):
            with self.subTest(url=url):
                response, body = self.fetch("GET", url)
                self.assertEqual((response.status, body), (200, b"hello, world\n"))
                self.assertIsNone(response.getheader("Via"))

    def test_another_nex_via_is_no_loop(self) -> None:
        origin = self.origin(lambda exchange: ok(", ".join(exchange.values("Via")).encode()))
        response, body = self.fetch("GET", origin.url(),
                                    headers={"Via": "1.1 nex-0123456789abcdef"})
        self.assertEqual(response.status, 200)
        self.assertTrue(body.startswith(b"1.1 nex-0123456789abcdef, 1.1 nex-"))


class SmugglingTest(ProxyTestCase):
    """Framing tricks: refused before the origin sees a request, or sent on framed anew."""

    def send(self, head: bytes, origin_url: str) -> bytes:
        return self.raw(head.replace(b"URL", origin_url.encode()))

    def test_content_length_with_transfer_encoding_reaches_no_origin(self) -> None:
        origin = self.origin(lambda exchange: ok())
        data = self.send(b"POST URL HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n"
                         b"Host: a\r\n\r\n", origin.url("/"))
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "))
        self.assertEqual(origin.connections, 0)

    def test_differing_content_lengths_reach_no_origin(self) -> None:
        origin = self.origin(lambda exchange: ok())
        data = self.send(b"POST URL HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                         b"Content-Length: 6\r\n\r\nhello!", origin.url("/"))
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "))
        self.assertEqual(origin.connections, 0)

    def test_bad_chunk_size_delivers_no_request(self) -> None:
        origin = self.origin(lambda exchange: ok())
        data = self.send(b"POST URL HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"zz\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
                         origin.url("/"))
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "))
        self.assertEqual(data.count(b"HTTP/1.1 "), 1)
        self.assertEqual(origin.received, [])
        self.assertNotIn(b"smuggled", b"".join(origin.raw))

    def test_connection_naming_content_length_keeps_the_body_framed(self) -> None:
        origin = self.origin(lambda exchange: ok(exchange.body))
        data = self.send(b"POST URL HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\n"
                         b"Content-Length: 5\r\n\r\nhelloGET URL HTTP/1.1\r\nHost: a\r\n"
                         b"Connection: close\r\n\r\n", origin.url("/"))
        replies = parse_replies(data)
        self.assertEqual([(reply.status, reply.body) for reply in replies],
                         [(200, b"hello"), (200, b"")])
        first, second = origin.received
        self.assertEqual(first.values("Content-Length"), ["5"])
        self.assertEqual(first.body, b"hello")
        self.assertEqual((second.method, second.values("Content-Length")), ("GET", []))

    def test_connection_naming_transfer_encoding_keeps_the_body_chunked(self) -> None:
        origin = self.origin(lambda exchange: ok(exchange.body))
        data = self.send(b"POST URL HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding, close"
                         b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                         origin.url("/"))
        reply, = parse_replies(data)
        self.assertEqual(reply.body, b"hello")
        exchange, = origin.received
        self.assertEqual(exchange.values("Transfer-Encoding"), ["chunked"])
        self.assertEqual(exchange.values("Content-Length"), [])


class HopByHopTest(ProxyTestCase):
    def test_hop_by_hop_fields_are_removed_both_ways_and_via_added(self) -> None:
        origin = self.origin(lambda exchange: ok(
            b"body", "Connection: X-Secret, keep-alive", "X-Secret: origin-only",
            "Keep-Alive: timeout=5", 'Proxy-Authenticate: Basic realm="o"', "Trailer: X-T",
            "Upgrade: h2c", "Proxy-Connection: keep-alive", "X-End: from-origin"))
        data = self.raw(
            b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: X-Hop, keep-alive\r\nX-Hop: client-only"
            b"\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"
            b"TE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\n"
            b"X-End: from-client\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: close\r\n\r\n" % origin.url("/").encode())
        exchange, = origin.received
        names = [name.lower() for name, _ in exchange.fields]
        for gone in ("connection", "x-hop", "keep-alive", "proxy-authorization", "te",
                     "upgrade", "proxy-connection"):
            self.assertNotIn(gone, names)
        self.assertEqual(exchange.values("X-End"), ["from-client"])
        self.assertRegex(exchange.values("Via")[0], r"^1\.1 nex-[0-9a-f]{16}$")
        reply = parse_replies(data)[0]
        for gone in ("x-secret", "keep-alive", "proxy-authenticate", "trailer", "upgrade",
                     "proxy-connection"):
            self.assertNotIn(gone, reply.headers)
        self.assertEqual(reply.headers["connection"], "keep-alive")  # Nex's own
        self.assertEqual(reply.headers["x-end"], "from-origin")
        self.assertRegex(reply.headers["via"], r"^1\.1 nex-[0-9a-f]{16}$")
        self.assertEqual(reply.body, b"body")


class MaxForwardsTest(ProxyTestCase):
    def test_options_with_max_forwards_0_is_answered_by_the_proxy(self) -> None:
        origin = self.origin(lambda exchange: ok())
        response, body = self.fetch("OPTIONS", origin.url("/x"), headers={"Max-Forwards": "0"})
        self.assertEqual(response.status, 200)
        self.assertIn("TRACE", response.getheader("Allow"))
        self.assertEqual(body, b"")
        self.assertEqual(origin.connections, 0)

    def test_trace_with_max_forwards_0_echoes_the_head_without_credentials(self) -> None:
        origin = self.origin(lambda exchange: ok())
        response, body = self.fetch("TRACE", origin.url("/x"), headers={
            "Max-Forwards": "0", "X-Seen": "yes", "Cookie": "id=secret",
            "Authorization": "Basic c2VjcmV0", "Proxy-Authorization": "Basic c2VjcmV0"})
        self.assertEqual(response.status, 200)
        self.assertEqual(response.getheader("Content-Type"), "message/http")
        self.assertTrue(body.startswith(b"TRACE %s HTTP/1.1\r\n" % origin.url("/x").encode()))
        self.assertIn(b"\r\nX-Seen: yes\r\n", body)
        self.assertNotIn(b"secret", body)
        self.assertNotIn(b"c2VjcmV0", body)
        self.assertEqual(origin.connections, 0)

    def test_max_forwards_above_0_is_passed_on_one_lower(self) -> None:
        origin = self.origin(lambda exchange: ok())
        response, _ = self.fetch("OPTIONS", origin.url("/x"), headers={"Max-Forwards": "3"})
        self.assertEqual(response.status, 200)
        exchange, = origin.received
        self.assertEqual(exchange.values("Max-Forwards"), ["2"])

    def test_malformed_max_forwards_is_400(self) -> None:
        origin = self.origin(lambda exchange: ok())
        for value in ("-1", "1x", "+1"):
            with self.subTest(value=value):
                response, _ = self.fetch("OPTIONS", origin.url("/"),
                                         headers={"Max-Forwards": value})
                self.assertEqual(response.status, 400)
        self.assertEqual(origin.connections, 0)


if __name__ == "__main__":
    unittest.main()
