"""The proxy's DNS: the cache, the look-up time-out, and one look-up per request whose
checked addresses are the only ones connected to."""

from __future__ import annotations

import socket
import threading
import unittest
from typing import List, Tuple

from nex.http.errors import HTTPError
from nex.http.framing import HeadLimits
from nex.http.request import parse_head
from nex.process.config import Config
from nex.proxy import dns
from nex.proxy.admission import Admission
from nex.proxy.blacklist import DomainList
from nex.proxy.dns import CachingResolver
from nex.proxy.figures import DNS_ENTRIES, DNS_FAILURES, DNS_HITS, DNS_LOOKUPS, new_tally
from nex.proxy.handler import ForwardProxy
from nex.proxy.upstream import OriginPool
from tests.support import RawOrigin, ok
from tests.support import SOCKET_TIMEOUT, wait_until
from tests.support.fakes import FakeClock




class CountingLookup:
    """Answers ``address`` for every name but ``*.invalid``, and counts the look-ups."""

    def __init__(self, address: str = "192.0.2.1") -> None:
        self.address = address
        self.calls: List[Tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> List[Tuple[int, tuple]]:
        self.calls.append((host, port))
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, (self.address, port))]


class CacheTest(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = FakeClock()
        self.lookup = CountingLookup()

    def resolver(self, ttl: float = 30.0) -> CachingResolver:
        return CachingResolver(self.lookup, ttl=ttl, timeout=SOCKET_TIMEOUT, clock=self.clock)

    def test_answers_are_kept_for_the_ttl(self) -> None:
        resolver = self.resolver()
        for _ in range(3):
            self.assertEqual(resolver("example.com", 80), ((socket.AF_INET, ("192.0.2.1", 80)),))
        self.assertEqual(self.lookup.calls, [("example.com", 80)])
        self.clock.now += 30
        resolver("example.com", 80)
        self.assertEqual(len(self.lookup.calls), 2)

    def test_failures_are_kept_for_five_seconds(self) -> None:
        resolver = self.resolver()
        for _ in range(2):
            with self.assertRaises(OSError):
                resolver("nowhere.invalid", 80)
        self.assertEqual(len(self.lookup.calls), 1)
        self.clock.now += 5
        with self.assertRaises(OSError):
            resolver("nowhere.invalid", 80)
        self.assertEqual(len(self.lookup.calls), 2)

    def test_ip_literals_go_straight_to_the_lookup(self) -> None:
        resolver = CachingResolver(self.lookup, ttl=30.0, timeout=0.0, clock=self.clock)
        self.assertEqual(resolver("192.0.2.7", 80), [(socket.AF_INET, ("192.0.2.1", 80))])
        self.assertEqual(self.lookup.calls, [("192.0.2.7", 80)])

    def test_ttl_0_turns_the_cache_off(self) -> None:
        resolver = self.resolver(ttl=0)
        resolver("example.com", 80)
        resolver("example.com", 80)
        with self.assertRaises(OSError):
            resolver("nowhere.invalid", 80)
        with self.assertRaises(OSError):
            resolver("nowhere.invalid", 80)
        self.assertEqual(len(self.lookup.calls), 4)

    def dns_figures(self, tally: List[int]) -> Tuple[int, int, int, int]:
        return (tally[DNS_HITS], tally[DNS_LOOKUPS], tally[DNS_FAILURES], tally[DNS_ENTRIES])

    def test_the_tally_counts_hits_look_ups_failures_and_entries(self) -> None:
        tally = new_tally()
        resolver = CachingResolver(self.lookup, ttl=30.0, timeout=SOCKET_TIMEOUT,
                                   clock=self.clock, tally=tally)
        for _ in range(3):
            resolver("example.com", 80)
        for _ in range(2):
            with self.assertRaises(OSError):
                resolver("nowhere.invalid", 80)
        resolver("192.0.2.7", 80)  # an IP literal needs no DNS: not counted
        self.assertEqual(self.dns_figures(tally), (3, 2, 1, 2))
        self.clock.now += 30  # both expired: example.com is looked up again
        resolver("example.com", 80)
        self.assertEqual(self.dns_figures(tally), (3, 3, 1, 2))

    def test_with_the_cache_off_every_look_up_is_counted(self) -> None:
        tally = new_tally()
        resolver = CachingResolver(self.lookup, ttl=0, timeout=SOCKET_TIMEOUT,
                                   clock=self.clock, tally=tally)
        resolver("example.com", 80)
        resolver("example.com", 80)
        with self.assertRaises(OSError):
            resolver("nowhere.invalid", 80)
        self.assertEqual(self.dns_figures(tally), (0, 3, 1, 0))

    def test_the_cache_is_bounded(self) -> None:
        resolver = self.resolver()
        for number in range(dns.MAX_ENTRIES + 1):
            resolver(f"host{number}.example", 80)
        resolver(f"host{dns.MAX_ENTRIES}.example", 80)  # the newest is still held
        self.assertEqual(len(self.lookup.calls), dns.MAX_ENTRIES + 1)
        resolver("host0.example", 80)  # the oldest was forgotten
        self.assertEqual(len(self.lookup.calls), dns.MAX_ENTRIES + 2)


class TimeOutTest(unittest.TestCase):
    def test_a_stuck_look_up_is_504_naming_it(self) -> None:
        release = threading.Event()
        self.addCleanup(release.set)

        def stuck(host: str, port: int) -> List[Tuple[int, tuple]]:
            release.wait(SOCKET_TIMEOUT)
            return [(socket.AF_INET, ("192.0.2.1", port))]
        tally = new_tally()
        resolver = CachingResolver(stuck, ttl=30.0, timeout=0.2, tally=tally)
        with self.assertRaises(HTTPError) as caught:
            resolver("slow.example", 80)
        self.assertEqual((caught.exception.status, caught.exception.failure),
                         (504, "dns_timeout"))
        self.assertEqual(caught.exception.detail,
                         "The DNS look-up of slow.example did not finish within 0.2 s.")
        self.assertEqual(tally[DNS_LOOKUPS], 0)
        release.set()  # the look-up is counted when it ends
        self.assertTrue(wait_until(lambda: tally[DNS_LOOKUPS] == 1))
        self.assertEqual((tally[DNS_FAILURES], tally[DNS_ENTRIES]), (0, 1))
        self.assertEqual(CachingResolver(stuck, ttl=30.0, timeout=SOCKET_TIMEOUT)(
            "slow.example", 80), ((socket.AF_INET, ("192.0.2.1", 80)),))


class ChangingLookup:
    """A rebinding attacker's DNS: the first answer is the test's origin, every later one an
    address nobody may reach."""

    def __init__(self, first: str, later: str) -> None:
        self.answers = [first, later]
        self.calls = 0

    def __call__(self, host: str, port: int) -> List[Tuple[int, tuple]]:
        address = self.answers[min(self.calls, 1)]
        self.calls += 1
        return [(socket.AF_INET, (address, port))]


class ResolveOnceOverSocketsTest(unittest.TestCase):
    def test_rebinding_between_the_check_and_the_connect_is_impossible(self) -> None:
        # Issue: a name resolved again between the check and the connect could be rebound
        # to an address the check would have refused.
        origin = RawOrigin(lambda exchange: ok(b"checked"))
        self.addCleanup(origin.close)
        lookup = ChangingLookup("127.0.0.1", "192.0.2.1")
        config = Config(proxy_enabled=True, proxy_denied_destinations=("192.0.2.0/24",))
        admission = Admission(allowed_clients=["127.0.0.1"], blacklist=DomainList(),
                              denied_destinations=config.proxy_denied_destinations,
                              connect_ports=[443], listen_port=8080, resolver=lookup)
        proxy = ForwardProxy(config, admission, OriginPool(), None, print)
        self.addCleanup(proxy.close)
        head = (b"GET http://rebind.example:%d/ HTTP/1.1\r\nHost: rebind.example\r\n\r\n"
                % origin.port)
        response = proxy.respond(parse_head(head, HeadLimits()), None, "127.0.0.1", "127.0.0.1")
        self.assertEqual((response.status, b"".join(response.body)), (200, b"checked"))
        response.release()
        self.assertEqual(lookup.calls, 1)
        self.assertEqual(origin.connections, 1)
        with self.assertRaises(HTTPError) as caught:  # the next look-up is checked again
            proxy.respond(parse_head(head, HeadLimits()), None, "127.0.0.1", "127.0.0.1")
        self.assertEqual(caught.exception.refusal, "denied_destination")
