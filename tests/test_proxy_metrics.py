"""The proxy's figures in the metrics, over real sockets: each kind of answer moves its
outcome by exactly one, bytes are counted each way, and the DNS cache and the origin pool
show what they did, summed over workers."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest
from typing import Dict, List, Mapping, Tuple
from unittest import mock

from nex.process.assembly import assemble
from nex.process.config import load_config
from nex.process.listener import Server
from nex.process.log import Logger
from nex.process.metrics import Metrics, MetricsTable
from tests.support import (REPO, SOCKET_TIMEOUT, START_TIMEOUT, EchoOrigin, NexServer, RawOrigin,
                           duplex, free_port, make_root, ok, proxy_settings, read_all, read_head,
                           receive_exactly)
from tests.support.access import write_users
from tests.support.metrics import Samples, parse, scrape

CREDENTIALS = "Basic " + base64.b64encode(b"alice:wonderland").decode()
Key = Tuple[str, Tuple[Tuple[str, str], ...]]


def outcome(name: str) -> Key:
    return ("nex_proxy_requests_total", (("outcome", name),))


CLIENT_TO_ORIGIN: Key = ("nex_proxy_bytes_total", (("direction", "client_to_origin"),))
ORIGIN_TO_CLIENT: Key = ("nex_proxy_bytes_total", (("direction", "origin_to_client"),))
DNS_HITS: Key = ("nex_proxy_dns_cache_hits_total", ())
DNS_LOOKUPS: Key = ("nex_proxy_dns_lookups_total", ())
DNS_FAILURES: Key = ("nex_proxy_dns_lookup_failures_total", ())
DNS_ENTRIES: Key = ("nex_proxy_dns_cache_entries", ())
OPENED: Key = ("nex_proxy_origin_connections_total", (("how", "opened"),))
REUSED: Key = ("nex_proxy_origin_connections_total", (("how", "reused"),))
TUNNELS_OPENED: Key = ("nex_tunnels_opened_total", ())
TUNNELS_OPEN: Key = ("nex_tunnels_open", ())


def changes(before: Samples, after: Samples) -> Dict[Key, float]:
    """How much each proxy figure moved between two scrapes (the others are left out)."""
    return {key: after[key] - before[key] for key in after
            if key[0].startswith(("nex_proxy_", "nex_tunnels_"))}


def settle(read, before: Samples, expected: Mapping[Key, float]) -> Dict[Key, float]:
    """The changes since ``before`` once the figures named in ``expected`` have reached it
    (a response is counted just after its last byte went out), or the time-out passed."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        moved = changes(before, read())
        if all(moved[key] == value for key, value in expected.items()):
            return moved
        if time.monotonic() > deadline:
            return moved
        time.sleep(0.05)


def send(server_port: int, data: bytes) -> bytes:
    """``data`` to Nex on a new connection; everything it answers until it closes."""
    with socket.create_connection(("127.0.0.1", server_port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(data)
        return read_all(sock)


def get(server_port: int, url: str, login: bool = True) -> bytes:
    authorization = f"Proxy-Authorization: {CREDENTIALS}\r\n" if login else ""
    return send(server_port, f"GET {url} HTTP/1.1\r\nHost: x\r\n{authorization}"
                             f"Connection: close\r\n\r\n".encode())


class ProxyFiguresOverSocketsTest(unittest.TestCase):
    """A Nex with the proxy behind a login, a blacklist, a denied address and one tunnel
    port; each kind of request once, then one scrape."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.folder = tempfile.mkdtemp(prefix="nex-proxy-metrics-")
        cls.root = make_root()
        users = os.path.join(cls.folder, "users")
        write_users(users, {"alice": "wonderland"})
        cls.origin = RawOrigin(lambda exchange: ok(b"x" * (100 + len(exchange.body))))
        cls.echo = EchoOrigin()
        settings = proxy_settings(auth=users, auth_failures_per_minute=0,
                                  blacklist="blocked.example", denied_destinations="127.0.0.2",
                                  connect_ports=cls.echo.port)
        settings["metrics"] = {"enabled": "yes"}
        cls.server = NexServer(cls.root, settings)
        try:
            cls.server.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        cls.origin.close()
        cls.echo.close()
        shutil.rmtree(cls.folder, ignore_errors=True)
        shutil.rmtree(cls.root, ignore_errors=True)

    def scrape(self) -> Samples:
        return scrape(self.server)

    def status(self, answer: bytes) -> int:
        self.assertTrue(answer.startswith(b"HTTP/1.1 "), answer[:60])
        return int(answer[9:12])

    def test_each_answer_moves_its_figures_by_exactly_what_it_did(self) -> None:
        port = self.server.port
        before = self.scrape()
        named = f"http://localhost:{self.origin.port}/"
        self.assertEqual(self.status(get(port, named)), 200)  # looked up, new connection
        self.assertEqual(self.status(get(port, named)), 200)  # a cache hit, a pooled one
        body = b"b" * 1000
        posted = send(port, f"POST http://127.0.0.1:{self.origin.port}/ HTTP/1.1\r\nHost: x\r\n"
                            f"Proxy-Authorization: {CREDENTIALS}\r\nContent-Length: 1000\r\n"
                            f"Connection: close\r\n\r\n".encode() + body)
        self.assertEqual(self.status(posted), 200)
        self.assertEqual(self.status(get(port, named, login=False)), 407)
        self.assertEqual(self.status(get(port, "http://blocked.example/")), 403)
        self.assertEqual(self.status(get(port, f"http://127.0.0.2:{self.origin.port}/")), 403)
        self.assertEqual(self.status(send(port, b"CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: x\r\n"
                                                b"Proxy-Authorization: " + CREDENTIALS.encode()
                                                + b"\r\nConnection: close\r\n\r\n")), 403)
        self.assertEqual(self.status(get(port, f"http://127.0.0.1:{free_port()}/")), 502)
        self.assertEqual(self.status(get(port, "http://nowhere.invalid/")), 502)
        carried = 3000
        with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
            sock.sendall(f"CONNECT 127.0.0.1:{self.echo.port} HTTP/1.1\r\nHost: x\r\n"
                         f"Proxy-Authorization: {CREDENTIALS}\r\n\r\n".encode())
            self.assertTrue(read_head(sock).startswith(b"HTTP/1.1 200 "))
            self.assertEqual(duplex(sock, b"t" * carried, carried), b"t" * carried)
        expected = {
            outcome("forwarded"): 3, outcome("auth"): 1, outcome("blacklist"): 1,
            outcome("denied_destination"): 1, outcome("port"): 1, outcome("refused"): 1,
            outcome("dns_failed"): 1, outcome("tunnel"): 1,
            CLIENT_TO_ORIGIN: 1000 + carried, ORIGIN_TO_CLIENT: 100 + 100 + 1100 + carried,
            DNS_LOOKUPS: 2, DNS_HITS: 1, DNS_FAILURES: 1, DNS_ENTRIES: 2,
            OPENED: 2, REUSED: 1, TUNNELS_OPENED: 1}
        moved = settle(self.scrape, before, expected)
        self.assertEqual({key: value for key, value in moved.items() if value}, expected)

    def test_an_open_tunnel_is_shown_while_it_relays(self) -> None:
        before = self.scrape()
        with socket.create_connection(("127.0.0.1", self.server.port),
                                      timeout=SOCKET_TIMEOUT) as sock:
            sock.sendall(f"CONNECT 127.0.0.1:{self.echo.port} HTTP/1.1\r\nHost: x\r\n"
                         f"Proxy-Authorization: {CREDENTIALS}\r\n\r\n".encode())
            self.assertTrue(read_head(sock).startswith(b"HTTP/1.1 200 "))
            self.assertEqual(duplex(sock, b"ping", 4), b"ping")
            during = changes(before, self.scrape())
            self.assertEqual((during[TUNNELS_OPEN], during[TUNNELS_OPENED],
                              during[outcome("tunnel")]), (1, 1, 0))  # counted as it ends
        after = settle(self.scrape, before, {TUNNELS_OPENED: 1, outcome("tunnel"): 1,
                                             CLIENT_TO_ORIGIN: 4, ORIGIN_TO_CLIENT: 4})
        self.assertEqual((after[TUNNELS_OPEN], after[outcome("tunnel")]), (0, 1))

    def test_a_websocket_is_a_tunnel_of_its_own_outcome(self) -> None:
        origin = RawOrigin(lambda exchange: b"HTTP/1.1 101 Switching Protocols\r\n"
                           b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + b"d" * 200)
        self.addCleanup(origin.close)
        before = self.scrape()
        with socket.create_connection(("127.0.0.1", self.server.port),
                                      timeout=SOCKET_TIMEOUT) as sock:
            sock.sendall(f"GET http://127.0.0.1:{origin.port}/chat HTTP/1.1\r\nHost: x\r\n"
                         f"Proxy-Authorization: {CREDENTIALS}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
                         f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
            self.assertTrue(read_head(sock).startswith(b"HTTP/1.1 101 "))
            self.assertEqual(receive_exactly(sock, 200), b"d" * 200)
            self.assertEqual(changes(before, self.scrape())[TUNNELS_OPEN], 1)
            sock.sendall(b"u" * 300)
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(read_all(sock), b"")
        expected = {outcome("websocket"): 1, TUNNELS_OPENED: 1, CLIENT_TO_ORIGIN: 300,
                    ORIGIN_TO_CLIENT: 200, OPENED: 1}
        moved = settle(self.scrape, before, expected)
        self.assertEqual({key: value for key, value in moved.items() if value}, expected)


class WorkersTest(unittest.TestCase):
    def test_the_figures_of_both_workers_are_summed(self) -> None:
        root = make_root()
        self.addCleanup(shutil.rmtree, root, True)
        origin = RawOrigin(lambda exchange: ok(b"hello"))
        self.addCleanup(origin.close)
        settings = proxy_settings()
        settings.update(metrics={"enabled": "yes"}, server={"workers": 2})
        with NexServer(root, settings) as server:
            before = scrape(server)
            requests = 20
            for _ in range(requests):  # a new connection each: the kernel spreads them
                self.assertTrue(get(server.port, f"http://localhost:{origin.port}/")
                                .startswith(b"HTTP/1.1 200 "))
            for _ in range(5):  # whichever worker answers the scrape sees all of them
                moved = settle(lambda: scrape(server), before, {
                    outcome("forwarded"): requests, ORIGIN_TO_CLIENT: 5 * requests})
                self.assertEqual(moved[outcome("forwarded")], requests)
                # Each worker has a cache of its own: one look-up in each worker that
                # served, every other request a hit; each holds the name once.
                self.assertEqual(moved[DNS_HITS] + moved[DNS_LOOKUPS], requests)
                self.assertIn(moved[DNS_LOOKUPS], (1, 2))
                self.assertEqual(moved[DNS_ENTRIES], moved[DNS_LOOKUPS])
                self.assertEqual(moved[OPENED] + moved[REUSED], requests)


class StuckResolver:
    """A ``getaddrinfo`` that hangs until released: the look-up time-out's case."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, host: str, port: int) -> List[Tuple[int, tuple]]:
        self.release.wait(SOCKET_TIMEOUT)
        return [(socket.AF_INET, ("127.0.0.1", port))]


class DnsTimeOutTest(unittest.TestCase):
    """A Nex in this process, whose DNS is made to hang, on a real socket."""

    def test_a_look_up_that_times_out_is_a_504_outcome(self) -> None:
        root = make_root()
        self.addCleanup(shutil.rmtree, root, True)
        config = load_config(None, {
            "document_root": root, "port": 0, "proxy_enabled": "yes",
            "proxy_denied_destinations": "", "proxy_dns_timeout": "0.2",
            "metrics_enabled": "yes", "error_pages": os.path.join(REPO, "error_pages"),
            "templates": os.path.join(REPO, "other_templates")})
        logs = os.open(os.devnull, os.O_WRONLY)
        logger = Logger(logs, logs, owned=(logs,))
        self.addCleanup(logger.close)
        metrics = Metrics(MetricsTable(1), 1, proxy=True)
        stuck = StuckResolver()
        self.addCleanup(stuck.release.set)
        with mock.patch("nex.proxy.admission.resolve_host", stuck):
            server = Server(config, lambda port: assemble(config, port, on_error=logger.warning,
                                                          tally=metrics.proxy_tally()),
                            logger, metrics=metrics)
        serving = threading.Thread(target=server.serve_forever)
        serving.start()
        self.addCleanup(serving.join, START_TIMEOUT)
        self.addCleanup(server.stop)
        before = parse(metrics.render())
        answer = get(server.port, "http://slow.example/", login=False)
        self.assertTrue(answer.startswith(b"HTTP/1.1 504 "), answer[:60])
        moved = settle(lambda: parse(metrics.render()), before,
                       {outcome("dns_timeout"): 1})
        self.assertEqual(moved[outcome("dns_timeout")], 1)
        stuck.release.set()  # the look-up ends and is counted then, with its answer kept
        moved = settle(lambda: parse(metrics.render()), before,
                       {outcome("dns_timeout"): 1, DNS_LOOKUPS: 1, DNS_ENTRIES: 1})
        self.assertEqual((moved[DNS_LOOKUPS], moved[DNS_ENTRIES], moved[DNS_FAILURES]),
                         (1, 1, 0))


if __name__ == "__main__":
    unittest.main()
