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
from typing import List, Tuple
from unittest import mock

from prometheus_client.parser import text_string_to_metric_families

from nex.http.framing import HeadLimits
from nex.http.request import parse_head
from nex.http.response import Response
from nex.process.log import Logger
from nex.process.metrics import SNAPSHOT_TRIES, Metrics, MetricsTable, certificate_expiry, \
    handler_of, proxy_outcome
from nex.proxy.figures import DNS_ENTRIES, DNS_HITS, FAILURES, ORIGINS_REUSED, OUTCOMES, \
    REFUSALS
from tests.support import SOCKET_TIMEOUT, START_TIMEOUT, NexServer, ResponseReader, exchange, \
    make_certificate, requires_openssl, wait_until
from tests.support import REPO, children
from tests.support.metrics import Samples, parse
from tests.support import temp_root


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
    def half_folded(self) -> Tuple[MetricsTable, Metrics]:
        """A table whose row 1 (5 requests) the supervisor is folding into row 0, stopped
        half-way: each counter added to row 0, none cleared yet; and a worker's metrics."""
        table = MetricsTable(2)
        worker = Metrics(table, table.take_row())
        get = request("GET /a HTTP/1.1\r\nHost: x\r\n")
        for _ in range(5):
            worker.request_done(get, Response(200), 1, 1)
        table.sequence[0] += 1
        for field in range(self.fields(table)):
            table.values[field] += table.values[self.fields(table) + field]
        return table, Metrics(table, table.take_row())

    @staticmethod
    def fields(table: MetricsTable) -> int:
        return len(table.values) // (table.rows + 1)

    def test_a_scrape_copies_the_table_between_folds(self) -> None:
        # The supervisor is another process: it may fold a row while a worker copies the
        # table, and the copy would then count the row twice, or not at all.
        table, scraper = self.half_folded()

        def fold_ends(seconds: float) -> None:
            for field in range(self.fields(table)):
                table.values[self.fields(table) + field] = 0
            table.sequence[0] += 1

        with mock.patch("nex.process.metrics.sleep", fold_ends):
            self.assertEqual(requests_of(parse(scraper.render()), "file", "2xx"), 5)

    def test_a_scrape_copies_the_table_again_when_a_fold_began_and_ended_during_the_copy(
            self) -> None:
        table = MetricsTable(2)
        worker = Metrics(table, table.take_row())
        get = request("GET /a HTTP/1.1\r\nHost: x\r\n")
        for _ in range(5):
            worker.request_done(get, Response(200), 1, 1)
        copy = table._copy
        copies = []

        def copy_in_a_fold() -> List[int]:
            # The first copy reads row 0 after the fold added to it and row 1 before the
            # fold cleared it; the sequence number is even again by the time it is read.
            if copies:
                return copy()
            fields = self.fields(table)
            table.sequence[0] += 1
            for field in range(fields):
                table.values[field] += table.values[fields + field]
            copies.append(copy())
            for field in range(fields):
                table.values[fields + field] = 0
            table.sequence[0] += 1
            return copies[0]

        with mock.patch.object(table, "_copy", copy_in_a_fold), \
                mock.patch("nex.process.metrics.sleep"):
            self.assertEqual(requests_of(parse(Metrics(table, 2).render()), "file", "2xx"), 5)

    def test_a_fold_that_never_ends_holds_a_scrape_a_bounded_time(self) -> None:
        table, scraper = self.half_folded()  # the supervisor was killed half-way
        pauses: List[float] = []
        with mock.patch("nex.process.metrics.sleep", pauses.append):
            self.assertEqual(requests_of(parse(scraper.render()), "file", "2xx"), 10)
        self.assertEqual(len(pauses), SNAPSHOT_TRIES)

    def test_a_fold_leaves_the_sequence_even_and_on(self) -> None:
        table = MetricsTable(2)
        table.give_back(table.take_row())
        self.assertEqual(table.sequence[0], 2)

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

    def test_an_ipv4_scraper_on_a_dual_stack_port_is_known_by_its_ipv4_address(self) -> None:
        metrics = Metrics(MetricsTable(1), 1, allowed_clients=("10.0.0.0/8",))
        scrape = request("GET /.nex/metrics HTTP/1.1\r\nHost: x\r\n")
        self.assertIsNotNone(metrics.page(scrape, "::ffff:10.1.2.3"))
        self.assertIsNone(metrics.page(scrape, "::ffff:127.0.0.1"))
        self.assertIsNone(metrics.page(scrape, "not an address"))

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


def outcome_of(samples: Samples, outcome: str) -> float:
    return samples["nex_proxy_requests_total", (("outcome", outcome),)]


def proxy_bytes(samples: Samples, direction: str) -> float:
    return samples["nex_proxy_bytes_total", (("direction", direction),)]


def no_tunnel(client: socket.socket, pending: bytes) -> Tuple[int, int]:
    return 0, 0


class ProxyFiguresTests(unittest.TestCase):
    """The proxy's figures: outcomes from a fixed set, bytes each way, the tally's rows."""

    def test_each_answer_has_its_outcome(self) -> None:
        connect = request("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n")
        get = request("GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n")
        cases = [
            (connect, Response(200, tunnel=no_tunnel), "tunnel"),
            (get, Response(101, forwarded=True, tunnel=no_tunnel), "websocket"),
            (get, Response(404, forwarded=True), "forwarded"),
            (get, Response(502, forwarded=True), "forwarded"),  # the origin's own 502
            (get, Response(403, refusal="blacklist"), "blacklist"),
            (connect, Response(403, refusal="port"), "port"),
            (get, Response(407, refusal="auth"), "auth"),
            (get, Response(502, failure="refused"), "refused"),
            (get, Response(504, failure="dns_timeout"), "dns_timeout"),
            (get, Response(400), "other"),
            (get, Response(403, refusal="a_token_nobody_knows"), "other"),
            (get, Response(503, refusal="max_connections"), "other"),
            (get, Response(502, failure="a_failure_nobody_knows"), "other"),
            (None, Response(400), "other"),
        ]
        for head, response, outcome in cases:
            with self.subTest(response=response):
                self.assertEqual(proxy_outcome(head, response), outcome)

    def test_every_token_the_proxy_sets_is_an_outcome(self) -> None:
        # An admission rule or an upstream failure whose token the metrics do not know
        # would be counted as "other" unnoticed.
        found = {"refusal": set(), "failure": set()}
        folder = os.path.join(REPO, "nex", "proxy")
        paths = [os.path.join(folder, name) for name in os.listdir(folder)
                 if name.endswith(".py")] + [os.path.join(REPO, "nex", "site", "login.py")]
        for path in paths:
            with open(path, encoding="utf-8") as source:
                for kind, token in re.findall(r'\b(refusal|failure)(?:: str)? ?= ?"(\w+)"',
                                              source.read()):
                    found[kind].add(token)
        self.assertEqual(found["refusal"], set(REFUSALS))
        self.assertEqual(found["failure"], set(FAILURES))
        self.assertEqual(len(set(OUTCOMES)), len(OUTCOMES))

    def test_outcomes_and_bytes_are_counted_with_the_response(self) -> None:
        metrics = Metrics(MetricsTable(1), 1, proxy=True)
        get = request("GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n")
        connect = request("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n")
        metrics.request_done(get, Response(200, forwarded=True), 1000, 60 + 300, 60)
        metrics.request_done(connect, Response(200, tunnel=no_tunnel), 7000, 50 + 4000, 50)
        metrics.request_done(get, Response(403, refusal="blacklist"), 90, 60 + 10, 60)
        metrics.request_done(get, Response(502, failure="reset"), 80, 60, 60)
        metrics.request_done(request("GET /a HTTP/1.1\r\nHost: x\r\n"), Response(200), 5, 30,
                             30)
        samples = parse(metrics.render())
        expected = dict.fromkeys(OUTCOMES, 0)
        expected.update(forwarded=1, tunnel=1, blacklist=1, reset=1)
        self.assertEqual({outcome: outcome_of(samples, outcome) for outcome in OUTCOMES},
                         expected)
        self.assertEqual(proxy_bytes(samples, "client_to_origin"), 300 + 4000)
        self.assertEqual(proxy_bytes(samples, "origin_to_client"), 1000 + 7000)
        self.assertEqual(samples["nex_sent_bytes_total", ()], 1000 + 7000 + 90 + 80 + 5)

    def test_figures_sum_over_rows_and_an_exited_worker_keeps_only_its_counters(self) -> None:
        table = MetricsTable(2)
        one, two = (Metrics(table, table.take_row(), proxy=True),
                    Metrics(table, table.take_row(), proxy=True))
        get = request("GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n")
        for metrics, hits in ((one, 3), (two, 4)):
            metrics.request_done(get, Response(200, forwarded=True), 10, 70, 60)
            metrics.tunnel_opened()
            tally = metrics.proxy_tally()
            tally[DNS_HITS] += hits
            tally[DNS_ENTRIES] = hits
            tally[ORIGINS_REUSED] += 1
        one.tunnel_closed()

        def figures():
            samples = parse(one.render())
            return (outcome_of(samples, "forwarded"), proxy_bytes(samples, "client_to_origin"),
                    samples["nex_tunnels_opened_total", ()], samples["nex_tunnels_open", ()],
                    samples["nex_proxy_dns_cache_hits_total", ()],
                    samples["nex_proxy_dns_cache_entries", ()],
                    samples["nex_proxy_origin_connections_total", (("how", "reused"),)])
        self.assertEqual(figures(), (2, 20, 2, 1, 7, 7, 2))
        table.give_back(2)  # the worker of row 2 died with a tunnel open and names cached
        self.assertEqual(figures(), (2, 20, 2, 0, 7, 3, 2))
        three = Metrics(table, table.take_row())  # the next worker gets the row, cleared
        self.assertEqual(list(three.proxy_tally()), [0] * len(three.proxy_tally()))

    def test_the_proxy_families_are_named_and_typed_and_shown_with_the_proxy_only(
            self) -> None:
        families = {family.name: family.type for family in text_string_to_metric_families(
            Metrics(MetricsTable(1), 1, proxy=True).render())}
        without = {family.name for family in text_string_to_metric_families(
            Metrics(MetricsTable(1), 1).render())}
        self.assertEqual({name for name in families if name.startswith("nex_proxy_")},
                         set(families) - without)
        for name, kind in (("nex_proxy_requests", "counter"), ("nex_proxy_bytes", "counter"),
                           ("nex_tunnels_opened", "counter"), ("nex_tunnels_open", "gauge"),
                           ("nex_proxy_dns_cache_hits", "counter"),
                           ("nex_proxy_dns_lookups", "counter"),
                           ("nex_proxy_dns_lookup_failures", "counter"),
                           ("nex_proxy_dns_cache_entries", "gauge"),
                           ("nex_proxy_origin_connections", "counter")):
            with self.subTest(name=name):
                self.assertEqual(families.get(name), kind)


class ServedMetricsTest(unittest.TestCase):
    """The real server, alone and with workers: the page parses and its counters move."""

    def setUp(self) -> None:
        self.root = temp_root(self, {"hello.txt": b"hello\n"})

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
