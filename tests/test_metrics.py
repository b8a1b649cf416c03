"""Metrics: the Prometheus page, parsed with prometheus_client's own text parser, whose
counters move with the traffic, summed over workers, and shown only to allowed clients."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import tempfile
import time
import unittest
from typing import Dict, Tuple

from prometheus_client.parser import text_string_to_metric_families

from nex.http.framing import HeadLimits
from nex.http.request import parse_head
from nex.http.response import Response
from nex.process.log import Logger
from nex.process.metrics import Metrics, MetricsTable, certificate_expiry, handler_of
from tests.support import SOCKET_TIMEOUT, START_TIMEOUT, NexServer, ResponseReader, exchange, \
    make_certificate, requires_openssl, wait_until
from tests.support import children

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a metrics page, by name and labels, through prometheus_client."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def requests_of(samples: Samples, handler: str, status_class: str) -> float:
    return samples["nex_requests_total", (("handler", handler), ("status_class", status_class))]


def request(text: str):
    return parse_head(text.encode("latin-1") + b"\r\n", HeadLimits())


class HandlerTests(unittest.TestCase):
    def test_each_kind_of_request_has_its_handler(self) -> None:
        cases = [
            ("GET /a.txt HTTP/1.1\r\nHost: x\r\n", Response(200), "file"),
            ("GET /docs/ HTTP/1.1\r\nHost: x\r\n", Response(200), "listing"),
            ("GET /docs/?download=zip HTTP/1.1\r\nHost: x\r\n", Response(200), "zip"),
            ("PUT /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n", Response(201), "upload"),
            ("GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n",
             Response(200, forwarded=True), "proxy"),
            ("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n", Response(403),
             "tunnel"),
            ("DELETE /a.txt HTTP/1.1\r\nHost: x\r\n", Response(405), "other"),
        ]
        for head, response, handler in cases:
            with self.subTest(head=head):
                self.assertEqual(handler_of(request(head), response), handler)
        self.assertEqual(handler_of(None, Response(400)), "other")


class TableTests(unittest.TestCase):
    def test_figures_sum_over_rows_and_an_exited_worker_leaves_its_counters(self) -> None:
        table = MetricsTable(2)
        one, two = Metrics(table, table.take_row()), Metrics(table, table.take_row())
        get = request("GET /a HTTP/1.1\r\nHost: x\r\n")
        one.request_done(get, Response(200), 100, 40)
        two.request_done(get, Response(404), 5, 41)
        one.connection_opened()
        two.connection_opened()
        table.count_restart()
        samples = parse(one.render())
        self.assertEqual(requests_of(samples, "file", "2xx"), 1)
        self.assertEqual(requests_of(samples, "file", "4xx"), 1)
        self.assertEqual(samples["nex_sent_bytes_total", ()], 105)
        self.assertEqual(samples["nex_received_bytes_total", ()], 81)
        self.assertEqual(samples["nex_connections_open", ()], 2)
        self.assertEqual(samples["nex_worker_restarts_total", ()], 1)
        table.give_back(2)  # the worker of row 2 died with a connection open
        samples = parse(one.render())
        self.assertEqual(samples["nex_connections_open", ()], 1)
        self.assertEqual(requests_of(samples, "file", "4xx"), 1)  # counters carry on
        self.assertEqual(samples["nex_received_bytes_total", ()], 81)
        three = Metrics(table, table.take_row())  # the next worker gets the row, cleared
        three.connection_closed()  # a gauge may dip below zero in one row, never fails
        self.assertEqual(parse(one.render())["nex_connections_open", ()], 0)

    def test_dropped_log_lines_and_tunnels_are_counted(self) -> None:
        metrics = Metrics(MetricsTable(1), 1)
        with tempfile.TemporaryFile() as access:
            logger = Logger(access.fileno(), access.fileno(), buffer_bytes=16)
            logger.on_drop = metrics.log_line_dropped
            logger.access("127.0.0.1", "GET /longer-than-the-buffer HTTP/1.1", 200, 1, None, None)
            logger.close()
        metrics.tunnel_opened()
        metrics.tunnel_opened()
        metrics.tunnel_closed()
        samples = parse(metrics.render())
        self.assertEqual(samples["nex_log_lines_dropped_total", ()], 1)
        self.assertEqual(samples["nex_tunnels_open", ()], 1)

    def test_every_name_is_in_the_nex_namespace(self) -> None:
        for family in text_string_to_metric_families(Metrics(MetricsTable(1), 1).render()):
            self.assertTrue(family.name.startswith("nex_"), family.name)

    def test_only_allowed_clients_get_the_page(self) -> None:
        metrics = Metrics(MetricsTable(1), 1, allowed_clients=("10.0.0.0/8",))
        scrape = request("GET /.nex/metrics HTTP/1.1\r\nHost: x\r\n")
        self.assertIsNotNone(metrics.answer(scrape, "10.1.2.3"))
        self.assertIsNone(metrics.answer(scrape, "127.0.0.1"))
        self.assertIsNone(metrics.answer(request("GET /other HTTP/1.1\r\nHost: x\r\n"),
                                         "10.1.2.3"))
        self.assertIsNone(metrics.answer(
            request("POST /.nex/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"),
            "10.1.2.3"))

    @requires_openssl
    def test_certificate_expiry_is_read_from_the_pem(self) -> None:
        folder = tempfile.mkdtemp(prefix="nex-metrics-tls-")
        self.addCleanup(shutil.rmtree, folder, True)
        certificate, _ = make_certificate(folder)
        expiry = certificate_expiry(certificate)
        self.assertIsNotNone(expiry)
        self.assertAlmostEqual(expiry, time.time() + 2 * 86400, delta=3600)  # -days 2
        self.assertIsNone(certificate_expiry(os.path.join(folder, "server.key")))
        samples = parse(Metrics(MetricsTable(1), 1, certificate=certificate).render())
        self.assertEqual(samples["nex_tls_certificate_expiry_timestamp_seconds", ()],
                         int(expiry))


class ServedMetricsTest(unittest.TestCase):
    """The real server, alone and with workers: the page parses and its counters move."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-metrics-")
        self.addCleanup(shutil.rmtree, self.root, True)
        with open(os.path.join(self.root, "hello.txt"), "w") as out:
            out.write("hello\n")

    def scrape(self, server: NexServer) -> Samples:
        with server.connect() as sock:
            answer = exchange(sock, b"GET /.nex/metrics HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertIn(b"Content-Type: text/plain; version=0.0.4; charset=utf-8", head)
        return parse(body.decode("utf-8"))

    def get(self, server: NexServer, path: str) -> bytes:
        with server.connect() as sock:
            return exchange(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                            .encode())

    def check_counters_move(self, server: NexServer) -> None:
        before = self.scrape(server)
        for _ in range(6):
            self.assertTrue(self.get(server, "/hello.txt").startswith(b"HTTP/1.1 200 "))
        self.assertEqual(requests_of(self.scrape(server), "other", "2xx")
                         - requests_of(before, "other", "2xx"), 1)  # the scrape before
        self.assertTrue(self.get(server, "/missing").startswith(b"HTTP/1.1 404 "))
        self.assertTrue(self.get(server, "/").startswith(b"HTTP/1.1 200 "))
        after = self.scrape(server)
        self.assertEqual(requests_of(after, "file", "2xx") - requests_of(before, "file", "2xx"),
                         6)
        self.assertEqual(requests_of(after, "file", "4xx") - requests_of(before, "file", "4xx"),
                         1)
        self.assertEqual(requests_of(after, "listing", "2xx")
                         - requests_of(before, "listing", "2xx"), 1)
        self.assertGreaterEqual(after["nex_sent_bytes_total", ()]
                                - before["nex_sent_bytes_total", ()], 6 * 6)
        self.assertGreater(after["nex_received_bytes_total", ()],
                           before["nex_received_bytes_total", ()])
        self.assertGreaterEqual(after["nex_connections_open", ()], 1)  # the scrape's own

    def test_single_process(self) -> None:
        with NexServer(self.root, {"metrics": {"enabled": "yes"}}) as server:
            self.check_counters_move(server)

    def test_single_process_counts_on_after_a_reload(self) -> None:
        with NexServer(self.root, {"metrics": {"enabled": "yes"}}) as server:
            for _ in range(3):
                self.assertTrue(self.get(server, "/hello.txt").startswith(b"HTTP/1.1 200 "))
            server.signal(signal.SIGHUP)
            server.wait_for_access_log(lambda text: "settings reloaded" in text)
            for _ in range(2):
                self.assertTrue(self.get(server, "/hello.txt").startswith(b"HTTP/1.1 200 "))
            samples = self.scrape(server)
        self.assertEqual(requests_of(samples, "file", "2xx"), 5)

    def test_refusals_at_a_cap_are_counted(self) -> None:
        with NexServer(self.root, {"metrics": {"enabled": "yes"},
                                   "server": {"max_connections_per_client": 1}}) as server:
            with server.connect() as held:
                held.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                ResponseReader(held).read()
                self.assertTrue(self.get(server, "/hello.txt").startswith(b"HTTP/1.1 429 "))
            deadline = time.monotonic() + START_TIMEOUT
            while True:  # the held connection may not have been released yet
                try:
                    samples = self.scrape(server)
                    break
                except AssertionError:
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.05)
            # At least the refusal above; a scrape tried before the held connection was
            # released may have been refused too.
            self.assertGreaterEqual(samples["nex_connections_refused_total",
                                            (("cap", "max_connections_per_client"),)], 1)
            self.assertEqual(samples["nex_connections_refused_total",
                                     (("cap", "max_connections"),)], 0)

    def test_workers_are_summed(self) -> None:
        with NexServer(self.root, {"metrics": {"enabled": "yes"},
                                   "server": {"workers": 3}}) as server:
            before = self.scrape(server)
            for _ in range(30):
                self.assertTrue(self.get(server, "/hello.txt").startswith(b"HTTP/1.1 200 "))
            for _ in range(5):  # whichever worker answers the scrape sees all 30
                after = self.scrape(server)
                self.assertEqual(requests_of(after, "file", "2xx")
                                 - requests_of(before, "file", "2xx"), 30)

    def test_a_killed_worker_is_counted_as_restarted_and_its_counters_stay(self) -> None:
        with NexServer(self.root, {"metrics": {"enabled": "yes"},
                                   "server": {"workers": 2}}) as server:
            for _ in range(10):
                self.assertTrue(self.get(server, "/hello.txt").startswith(b"HTTP/1.1 200 "))
            before = self.scrape(server)
            victim = sorted(children(server.pid))[0]
            os.kill(victim, signal.SIGKILL)
            self.assertTrue(wait_until(lambda: len(children(server.pid) - {victim}) == 2),
                            "the killed worker was not replaced")
            after = self.scrape(server)
        self.assertEqual(after["nex_worker_restarts_total", ()], 1)
        # Nothing the killed worker counted is lost (the scrape before it counts as other).
        self.assertEqual(requests_of(after, "file", "2xx"), requests_of(before, "file", "2xx"))
        self.assertGreaterEqual(requests_of(after, "file", "2xx"), 10)

    def test_metrics_are_not_disclosed_to_clients_outside_allowed_clients(self) -> None:
        with NexServer(self.root, {"metrics": {"enabled": "yes",
                                               "allowed_clients": "10.0.0.0/8"}}) as server:
            answer = self.get(server, "/.nex/metrics")
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 "), answer[:40])
        self.assertNotIn(b"nex_requests_total", answer)

    def metrics_port(self, server: NexServer) -> int:
        match = re.search(r"metrics at http://127\.0\.0\.1:(\d+)/\.nex/metrics$",
                          server.stdout(), re.MULTILINE)
        self.assertIsNotNone(match, server.stdout())
        return int(match.group(1))

    def check_separate_port(self, settings) -> None:
        with NexServer(self.root, settings) as server:
            port = self.metrics_port(server)
            self.assertNotEqual(port, server.port)
            for _ in range(4):
                self.assertTrue(self.get(server, "/hello.txt").startswith(b"HTTP/1.1 200 "))
            self.assertTrue(self.get(server, "/.nex/metrics").startswith(b"HTTP/1.1 404 "))
            with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
                answer = exchange(sock, b"GET /.nex/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _, body = answer.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            self.assertEqual(requests_of(parse(body.decode()), "file", "2xx"), 4)
            with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
                other = exchange(sock, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(other.startswith(b"HTTP/1.1 404 "), other[:40])

    def test_separate_port_single_process(self) -> None:
        self.check_separate_port({"metrics": {"enabled": "yes", "port": 0}})

    def test_separate_port_with_workers(self) -> None:
        self.check_separate_port({"metrics": {"enabled": "yes", "port": 0},
                                  "server": {"workers": 2}})

    def test_off_by_default(self) -> None:
        with NexServer(self.root) as server:
            self.assertTrue(self.get(server, "/.nex/metrics").startswith(b"HTTP/1.1 404 "))


if __name__ == "__main__":
    unittest.main()
