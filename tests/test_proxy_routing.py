"""Which requests the proxy takes, without sockets: ForwardProxy.claims and names_nex, and the
proxy's place before every check of the file server in Dispatcher.respond."""

from __future__ import annotations

import os
import unittest
from typing import List, Optional, Tuple

from nex.http.errors import HTTPError
from nex.process.config import Config
from nex.site.cors import CorsPolicy
from nex.site.routing import SERVED_METHODS, Dispatcher
from nex.site.hosts import HostValidator
from nex.proxy.admission import Destination
from nex.proxy.handler import ForwardProxy, _authority
from nex.http.request import Headers, Request
from nex.http.response import Response
from nex.files.templates import TemplateSet
from tests.support import REPO

PORT = 8080


def proxy(bind: str = "127.0.0.1", port: int = PORT, via: bool = True,
          server_name: str = "files.example") -> ForwardProxy:
    config = Config(proxy_enabled=True, bind=bind, port=port, server_name=server_name,
                    proxy_via=via)
    return ForwardProxy.from_config(config, listen_port=port, on_error=print)


def request(method: str, target: str, host: str, *fields: Tuple[str, str]) -> Request:
    path = "" if method == "CONNECT" or target == "*" else "/"
    return Request(method, target, path, "", "HTTP/1.1", Headers([("Host", host), *fields]),
                   host, True)


class NamesNexTest(unittest.TestCase):
    def test_bound_to_one_loopback_address(self) -> None:
        nex = proxy()
        cases = [
            ("localhost:8080", True), ("LOCALHOST.:8080", True), ("127.0.0.1:8080", True),
            ("files.example:8080", True), ("Files.Example.:8080", True),
            ("[::ffff:127.0.0.1]:8080", True),
            ("localhost", False), ("localhost:8081", False), ("127.0.0.2:8080", False),
            ("[::1]:8080", False), ("other.example:8080", False), ("files.example", False),
            ("127.1:8080", False), ("bad host:8080", False),
        ]
        for authority, expected in cases:
            with self.subTest(authority=authority):
                self.assertIs(nex.names_nex("http", authority, "127.0.0.1"), expected)

    def test_the_address_the_client_reached_is_nex(self) -> None:
        nex = proxy(bind="0.0.0.0")
        self.assertTrue(nex.names_nex("http", "192.0.2.7:8080", "192.0.2.7"))
        self.assertTrue(nex.names_nex("http", "192.0.2.7:8080", "::ffff:192.0.2.7"))
        self.assertFalse(nex.names_nex("http", "192.0.2.8:8080", "192.0.2.7"))

    def test_bound_to_every_address_any_loopback_address_is_nex(self) -> None:
        for bind in ("0.0.0.0", "::"):
            nex = proxy(bind=bind)
            for authority in ("127.0.0.9:8080", "[::1]:8080", "localhost:8080"):
                with self.subTest(bind=bind, authority=authority):
                    self.assertTrue(nex.names_nex("http", authority, None))
            self.assertFalse(nex.names_nex("http", "198.51.100.1:8080", None))

    def test_bound_to_localhost(self) -> None:
        nex = proxy(bind="localhost")
        self.assertTrue(nex.names_nex("http", "127.0.0.1:8080", None))
        self.assertTrue(nex.names_nex("http", "[::1]:8080", None))

    def test_the_scheme_gives_the_port_when_none_is_written(self) -> None:
        self.assertTrue(proxy(port=80).names_nex("http", "localhost", None))
        self.assertFalse(proxy(port=80).names_nex("https", "localhost", None))
        self.assertTrue(proxy(port=443).names_nex("https", "localhost", None))


class ClaimsTest(unittest.TestCase):
    def test_table(self) -> None:
        nex = proxy()
        cases = [
            ("CONNECT always", request("CONNECT", "localhost:8080", "localhost:8080"), True),
            ("origin-form never", request("GET", "/", "other.example"), False),
            ("asterisk never", request("OPTIONS", "*", "other.example"), False),
            ("another host", request("GET", "http://other.example/", "other.example"), True),
            ("Nex itself", request("GET", "http://localhost:8080/", "localhost:8080"), False),
            ("https to Nex", request("GET", "https://localhost:8080/", "localhost:8080"),
             False),
            ("https elsewhere", request("GET", "https://other.example/", "other.example"),
             True),
        ]
        for label, req, expected in cases:
            with self.subTest(label):
                self.assertIs(nex.claims(req, "127.0.0.1"), expected)

    def test_own_via_is_claimed_even_for_nex_itself_so_that_it_gets_508(self) -> None:
        nex = proxy()
        pseudonym = nex._pseudonym
        looped = request("GET", "http://localhost:8080/", "localhost:8080",
                         ("Via", f"1.1 elsewhere, 1.1 {pseudonym}"))
        self.assertTrue(nex.claims(looped, "127.0.0.1"))
        other = request("GET", "http://localhost:8080/", "localhost:8080",
                        ("Via", "1.1 nex-0000000000000000"))
        self.assertFalse(nex.claims(other, "127.0.0.1"))

    def test_the_remembered_answer_is_per_address_reached_and_per_scheme(self) -> None:
        nex = proxy(bind="0.0.0.0")
        mine = request("GET", "http://192.0.2.7:8080/", "192.0.2.7:8080")
        for local_address, expected in (("192.0.2.7", False), ("192.0.2.8", True),
                                        ("192.0.2.7", False)):
            with self.subTest(local_address=local_address):
                self.assertIs(nex.claims(mine, local_address), expected)
        nex = proxy(port=80)
        self.assertFalse(nex.claims(request("GET", "http://localhost/", "localhost"), None))
        self.assertTrue(nex.claims(request("GET", "https://localhost/", "localhost"), None))
        self.assertFalse(nex.claims(request("GET", "http://localhost/", "localhost"), None))

    def test_without_via_no_pseudonym_is_looked_for(self) -> None:
        nex = proxy(via=False)
        looped = request("GET", "http://localhost:8080/", "localhost:8080",
                         ("Via", "1.1 nex-0000000000000000"))
        self.assertFalse(nex.claims(looped, "127.0.0.1"))


class AuthorityTest(unittest.TestCase):
    """The origin the access log names and a parent's CONNECT reaches, remembered per host
    and port."""

    def test_names_and_addresses(self) -> None:
        for host, port, expected in (("a.example", 80, "a.example:80"),
                                     ("a.example", 8080, "a.example:8080"),
                                     ("::1", 8080, "[::1]:8080"), ("::1", 80, "[::1]:80"),
                                     ("127.0.0.1", 80, "127.0.0.1:80")):
            with self.subTest(host=host, port=port):
                self.assertEqual(_authority(Destination(host, port, (), None)), expected)


class RecordingProxy:
    """Claims absolute-form requests and records how it was asked to answer them."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Optional[str], str]] = []

    def claims(self, request: Request, local_address: Optional[str]) -> bool:
        return not request.target.startswith("/")

    def respond(self, request, body, peer, local_address) -> Response:
        self.calls.append((request.target, local_address, peer))
        return Response(200, [("X-From", "proxy")], [b"proxied"])


class DispatchOrderTest(unittest.TestCase):
    """The proxy answers before the Host check, the login and CORS have a say."""

    def setUp(self) -> None:
        config = Config(error_pages=os.path.join(REPO, "error_pages"),
                        templates=os.path.join(REPO, "other_templates"))
        self.proxy = RecordingProxy()
        self.dispatcher = Dispatcher(
            config, TemplateSet.load(config.error_pages, config.templates),
            HostValidator(("localhost",)), "Nex test",
            cors=CorsPolicy(("*",), SERVED_METHODS), proxy=self.proxy)

    def test_proxy_requests_skip_the_file_servers_checks(self) -> None:
        req = request("GET", "http://other.example/", "other.example",
                      ("Origin", "https://app.example"))
        response = self.dispatcher.respond(req, None, "203.0.113.1", peer="127.0.0.1",
                                           local_address="127.0.0.1")
        self.assertEqual(response.body, [b"proxied"])
        self.assertEqual(response.headers, [("X-From", "proxy")])  # no CORS fields
        self.assertEqual(self.proxy.calls, [("http://other.example/", "127.0.0.1",
                                             "127.0.0.1")])

    def test_the_peer_defaults_to_the_client(self) -> None:
        self.dispatcher.respond(request("GET", "http://other.example/", "other.example"), None,
                                "127.0.0.1")
        self.assertEqual(self.proxy.calls[0][2], "127.0.0.1")

    def test_other_requests_still_meet_the_host_check(self) -> None:
        from nex.http.errors import HTTPError
        with self.assertRaises(HTTPError) as caught:
            self.dispatcher.respond(request("GET", "/", "other.example"), None, "127.0.0.1")
        self.assertEqual(caught.exception.status, 403)
        self.assertEqual(self.proxy.calls, [])


if __name__ == "__main__":
    unittest.main()


class RefusalTokenTest(unittest.TestCase):
    def test_the_error_page_carries_the_refusal_for_the_log(self) -> None:
        config = Config(error_pages=os.path.join(REPO, "error_pages"),
                        templates=os.path.join(REPO, "other_templates"))
        dispatcher = Dispatcher(config, TemplateSet.load(config.error_pages, config.templates),
                                HostValidator(("*",)), "Nex test")
        error = HTTPError(403, "This proxy does not forward requests to port 25.",
                          refusal="port")
        self.assertEqual(dispatcher.error_response(error).refusal, "port")
        self.assertIsNone(dispatcher.error_response(HTTPError(403)).refusal)
