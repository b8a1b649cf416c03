"""A parent proxy: a second Nex that the first sends its requests and tunnels through, with a
login, and the destinations ``parent_bypass`` sends directly."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import tempfile
import unittest
from typing import List, Tuple

from nex.http.errors import HTTPError
from nex.proxy.admission import Admission, Destination
from nex.proxy.blacklist import DomainList
from nex.proxy.parent import Parent, parse_parent
from tests.support import RawOrigin, duplex, make_root, ok, proxy_settings
from tests.support import NexServer, read_all
from tests.support import parse_replies
from tests.support import EchoOrigin, open_tunnel
from tests.support.access import write_users


class ParentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.folder = tempfile.mkdtemp(prefix="nex-parent-")
        cls.addClassCleanup(shutil.rmtree, cls.folder, True)
        cls.root = make_root()
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        users = os.path.join(cls.folder, "users")
        write_users(users, {"alice": "wonder land"})
        cls.origin = RawOrigin(lambda exchange: ok(b"from the origin"))
        cls.addClassCleanup(cls.origin.close)
        cls.echo = EchoOrigin()
        cls.addClassCleanup(cls.echo.close)
        cls.parent = cls.start(proxy_settings(auth=users, connect_ports=cls.echo.port))
        parent = f"http://alice:wonder%20land@127.0.0.1:{cls.parent.port}"
        cls.child = cls.start(proxy_settings(parent=parent, parent_bypass="localhost",
                                             connect_ports=cls.echo.port))
        cls.refused = cls.start(proxy_settings(
            parent=f"http://alice:guess@127.0.0.1:{cls.parent.port}"))

    @classmethod
    def start(cls, settings) -> NexServer:
        server = NexServer(cls.root, settings)
        cls.addClassCleanup(server.stop)
        return server.start()

    def request(self, server: NexServer, url: str) -> bytes:
        with server.connect() as sock:
            sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return read_all(sock)

    def test_requests_go_through_the_parent_with_its_login(self) -> None:
        url = self.origin.url("/through")
        reply, = parse_replies(self.request(self.child, url))
        self.assertEqual((reply.status, reply.body), (200, b"from the origin"))
        exchange = next(exchange for exchange in self.origin.received
                        if exchange.target == "/through")
        vias = ", ".join(exchange.values("Via"))
        self.assertRegex(vias, r"\A1\.1 nex-[0-9a-f]{16}, 1\.1 nex-[0-9a-f]{16}\Z")
        self.assertEqual(exchange.values("Proxy-Authorization"), [])
        self.parent.wait_for_access_log(lambda text: 'alice [' in text and url in text)
        self.assertIn(f'"GET {url} HTTP/1.1" 200 ', self.parent.access_log())

    def test_tunnels_go_through_the_parent(self) -> None:
        with self.child.connect() as sock:
            open_tunnel(sock, self.echo.port, b"early")
            data = os.urandom(100000)
            self.assertEqual(duplex(sock, data, 5 + len(data)), b"early" + data)
        target = f"CONNECT 127.0.0.1:{self.echo.port} HTTP/1.1"
        self.parent.wait_for_access_log(lambda text: target in text)
        self.assertIn(target, self.parent.access_log())

    def test_bypassed_destinations_are_reached_directly(self) -> None:
        url = f"http://localhost:{self.origin.port}/direct"
        reply, = parse_replies(self.request(self.child, url))
        self.assertEqual(reply.status, 200)
        exchange = next(exchange for exchange in self.origin.received
                        if exchange.target == "/direct")
        self.assertRegex(", ".join(exchange.values("Via")), r"\A1\.1 nex-[0-9a-f]{16}\Z")

    def test_a_parent_that_refuses_the_login_is_502(self) -> None:
        reply, = parse_replies(self.request(self.refused, self.origin.url("/refused")))
        self.assertEqual(reply.status, 502)
        self.assertIn(b"did not accept", reply.body)


class ParseParentTest(unittest.TestCase):
    def test_addresses(self) -> None:
        self.assertEqual(parse_parent("http://Proxy.Example.:3128"),
                         Parent("proxy.example", 3128, None))
        self.assertEqual(parse_parent("HTTP://[::1]:8080/"), Parent("::1", 8080, None))
        parent = parse_parent("http://j%C3%BCrgen:p%40ss:w@proxy.example:3128")
        self.assertEqual(parent.authorization, "Basic " + base64.b64encode(
            "j\u00fcrgen:p@ss:w".encode()).decode())

    def test_connect_head(self) -> None:
        self.assertEqual(Parent("p", 1, "Basic eA==").connect_head("[::1]:443"),
                         b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n"
                         b"Proxy-Authorization: Basic eA==\r\n\r\n")

    def test_refused(self) -> None:
        for text in ("proxy:3128", "https://proxy:3128", "http://proxy", "http://proxy:0",
                     "http://:3128", "http://a b:3128", "http://:pw@proxy:3128",
                     "http://%FF:pw@proxy:3128", "http://proxy:3128/path"):
            with self.subTest(text=text), self.assertRaises(ValueError):
                parse_parent(text)


class ParentAdmissionTest(unittest.TestCase):
    def make(self, **options) -> Admission:
        self.looked_up: List[str] = []

        def resolver(host: str, port: int) -> List[Tuple[int, tuple]]:
            self.looked_up.append(host)
            return [(socket.AF_INET, ("192.0.2.9", port))]
        return Admission(allowed_clients=["127.0.0.1"], blacklist=DomainList(),
                         denied_destinations=["10.0.0.0/8"], connect_ports=[443],
                         listen_port=8080, resolver=resolver,
                         parent=Parent("parent.example", 3128, None), **options)

    def admit(self, admission: Admission, host: str) -> Destination:
        return admission.admit(client="127.0.0.1", method="GET", host=host, port=80,
                               proxy_authorization=None, via=None)

    def test_names_are_left_to_the_parent_and_its_name_is_resolved(self) -> None:
        destination = self.admit(self.make(), "far.example")
        self.assertEqual(self.looked_up, ["parent.example"])
        self.assertEqual((destination.host, destination.parent.host, destination.addresses),
                         ("far.example", "parent.example",
                          ((socket.AF_INET, ("192.0.2.9", 3128)),)))

    def test_addresses_in_the_request_are_still_checked(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            self.admit(self.make(), "10.1.2.3")
        self.assertEqual(caught.exception.refusal, "denied_destination")

    def test_bypassed_destinations_are_resolved_and_reached_directly(self) -> None:
        destination = self.admit(self.make(parent_bypass=DomainList(["intranet.example"])),
                                 "www.intranet.example")
        self.assertIsNone(destination.parent)
        self.assertEqual(self.looked_up, ["www.intranet.example"])

    def test_an_allow_list_admits_only_listed_names_through_the_parent(self) -> None:
        admission = self.make(allowed=DomainList(["far.example", "192.0.2.0/24"]))
        self.admit(admission, "far.example")
        self.admit(admission, "192.0.2.1")
        with self.assertRaises(HTTPError) as caught:
            self.admit(admission, "other.example")
        self.assertEqual(caught.exception.refusal, "not_allowed")
