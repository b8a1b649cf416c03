"""The proxy's blacklist: label boundaries, case, trailing dots, IDNA, addresses, file reload."""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
import unittest
from typing import List

from nex.proxy.blacklist import DomainList, canonical_host, parse_entry, parse_file
from tests.support.fakes import rewrite




class CanonicalHostTest(unittest.TestCase):
    """The one spelling of a host that the blacklist, the resolver and the log share."""

    def test_spellings(self) -> None:
        for host, canonical in (
                ("example.com", "example.com"), ("EXAMPLE.Com", "example.com"),
                ("example.com.", "example.com"), ("bücher.example", "xn--bcher-kva.example"),
                ("BÜCHER.example.", "xn--bcher-kva.example"),
                ("b%C3%BCcher.example", "xn--bcher-kva.example"),
                ("ex%61mple.com", "example.com"), ("under_score.example", "under_score.example"),
                ("localhost", "localhost"), ("127.0.0.1", "127.0.0.1"), ("[::1]", "::1"),
                ("[0:0::1]", "::1"), ("2001:DB8::1", "2001:db8::1")):
            with self.subTest(host=host):
                self.assertEqual(canonical_host(host), canonical)

    def test_legacy_numeric_hosts_are_refused(self) -> None:
        # inet_aton would read each of these as 127.0.0.1, past any entry naming it.
        for host in ("127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1", "127.000.000.001",
                     "example.0x10", "a.123"):
            with self.subTest(host=host), self.assertRaises(ValueError):
                canonical_host(host)

    def test_malformed_hosts_are_refused(self) -> None:
        for host in ("", ".", "a..b", "exa mple.com", "-", "a" * 64 + ".com", "[1.2.3.4]",
                     "example.com%2f", "%ff.example", "fe80::1%eth0", "host:80", "a/b",
                     ".".join(["a" * 63] * 4) + ".com"):
            with self.subTest(host=host), self.assertRaises(ValueError):
                canonical_host(host)


class DomainListTest(unittest.TestCase):
    def test_domain_and_subdomains_but_not_label_suffixes(self) -> None:
        blacklist = DomainList(["example.com"])
        for host, refused in (("example.com", True), ("a.example.com", True),
                              ("b.a.example.com", True), ("notexample.com", False),
                              ("example.com.evil", False), ("com", False),
                              ("example.co", False), ("xexample.com", False)):
            with self.subTest(host=host):
                self.assertIs(blacklist.matches(host), refused)

    def test_case_and_trailing_dots(self) -> None:
        blacklist = DomainList(["Example.COM."])
        for host in ("example.com", "EXAMPLE.COM", "a.Example.com.", "example.com."):
            with self.subTest(host=host):
                self.assertTrue(blacklist.matches(host))

    def test_idna_names_compare_in_ascii(self) -> None:
        for entry, host in (("bücher.example", "xn--bcher-kva.example"),
                            ("xn--bcher-kva.example", "bücher.example"),
                            ("bücher.example", "www.BÜCHER.example"),
                            ("xn--bcher-kva.example", "shop.b%c3%bccher.example")):
            with self.subTest(entry=entry, host=host):
                self.assertTrue(DomainList([entry]).matches(host))
        self.assertFalse(DomainList(["bücher.example"]).matches("bucher.example"))

    def test_percent_encoded_names_are_decoded(self) -> None:
        self.assertTrue(DomainList(["example.com"]).matches("%65xample.com"))

    def test_ip_literals(self) -> None:
        blacklist = DomainList(["192.0.2.7", "2001:db8::1", "[2001:db8::2]"])
        for host, refused in (("192.0.2.7", True), ("192.0.2.8", False),
                              ("2001:db8::1", True), ("[2001:db8::1]", True),
                              ("[2001:DB8:0::2]", True), ("2001:db8::3", False),
                              ("::ffff:192.0.2.7", True)):
            with self.subTest(host=host):
                self.assertIs(blacklist.matches(host), refused)

    def test_networks(self) -> None:
        blacklist = DomainList(["10.0.0.0/8", "2001:db8::/32", "192.0.2.1/24"])
        for host, refused in (("10.1.2.3", True), ("11.0.0.1", False),
                              ("[2001:db8:ffff::1]", True), ("2001:db9::1", False),
                              ("192.0.2.200", True), ("[::ffff:10.0.0.1]", True)):
            with self.subTest(host=host):
                self.assertIs(blacklist.matches(host), refused)

    def test_networks_do_not_match_names(self) -> None:
        # No DNS: a name is never turned into an address here.
        self.assertFalse(DomainList(["127.0.0.0/8"]).matches("localhost"))

    def test_addresses_match_resolved_addresses(self) -> None:
        blacklist = DomainList(["203.0.113.0/24", "example.com"])
        self.assertTrue(blacklist.matches_address(ipaddress.ip_address("203.0.113.9")))
        self.assertTrue(blacklist.matches_address(ipaddress.ip_address("::ffff:203.0.113.9")))
        self.assertFalse(blacklist.matches_address(ipaddress.ip_address("198.51.100.1")))

    def test_malformed_host_matches_nothing(self) -> None:
        self.assertFalse(DomainList(["example.com"]).matches("exa mple.com"))

    def test_empty_list_matches_nothing(self) -> None:
        self.assertFalse(DomainList().matches("example.com"))

    def test_bad_entries_are_refused(self) -> None:
        for entry in ("exa mple.com", "10.0.0.0/33", "example.com/8", "*.example.com",
                      "127.1", "[192.0.2.1]", "http://example.com", "", "fe80::1%eth0",
                      "%65xample.com"):
            with self.subTest(entry=entry), self.assertRaises(ValueError) as caught:
                DomainList([entry])
            self.assertEqual(str(caught.exception),
                             f"{entry!r} is not a domain name, IP address or network")

    def test_parse_entry(self) -> None:
        self.assertEqual(parse_entry("Bücher.Example."), "xn--bcher-kva.example")
        self.assertEqual(parse_entry("[::1]"), ipaddress.ip_network("::1/128"))
        self.assertEqual(parse_entry("10.1.2.3/8"), ipaddress.ip_network("10.0.0.0/8"))


class BlacklistFileTest(unittest.TestCase):
    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-blacklist-")
        self.addCleanup(shutil.rmtree, self.folder)
        self.path = os.path.join(self.folder, "blacklist.txt")
        self.errors: List[str] = []

    def load(self, text: str, entries: List[str] = ()) -> DomainList:
        rewrite(self.path, text)
        return DomainList(entries, self.path, on_error=self.errors.append, check_interval=0)

    def test_lines_comments_and_blanks(self) -> None:
        blacklist = self.load("# ads\nads.example   # all of them\n\n  \t\n198.51.100.0/24\r\n"
                              "bücher.example\n")
        for host in ("ads.example", "x.ads.example", "198.51.100.9", "xn--bcher-kva.example"):
            self.assertTrue(blacklist.matches(host), host)
        self.assertFalse(blacklist.matches("example"))

    def test_file_and_setting_entries_both_count(self) -> None:
        blacklist = self.load("a.example\n", ["b.example"])
        self.assertTrue(blacklist.matches("a.example"))
        self.assertTrue(blacklist.matches("b.example"))

    def test_bad_line_at_start_names_the_line(self) -> None:
        rewrite(self.path, "a.example\n\nexa mple\n")
        with self.assertRaises(ValueError) as caught:
            DomainList([], self.path)
        self.assertEqual(str(caught.exception), f"{self.path} line 3: 'exa mple' is not a"
                                                " domain name, IP address or network")

    def test_not_utf8(self) -> None:
        with self.assertRaises(ValueError) as caught:
            parse_file(b"a.example\n\xff.example\n")
        self.assertEqual(str(caught.exception), "line 2: not UTF-8 text")

    def test_byte_order_mark_is_ignored(self) -> None:
        self.assertEqual(parse_file("\ufeffa.example\n".encode("utf-8")).domains,
                         frozenset({"a.example"}))

    def test_missing_file(self) -> None:
        missing = os.path.join(self.folder, "missing.txt")
        with self.assertRaises(ValueError) as caught:
            DomainList([], missing)
        self.assertEqual(str(caught.exception), f"{missing} does not exist")

    def test_changed_file_is_read_again(self) -> None:
        blacklist = self.load("a.example\n")
        rewrite(self.path, "b.example\n")
        self.assertFalse(blacklist.matches("a.example"))
        self.assertTrue(blacklist.matches("b.example"))

    def test_a_domain_added_to_a_file_that_listed_none_is_refused(self) -> None:
        blacklist = self.load("198.51.100.0/24\n")
        self.assertFalse(blacklist.matches("a.example"))
        rewrite(self.path, "198.51.100.0/24\na.example\n")
        self.assertTrue(blacklist.matches("a.example"))
        self.assertTrue(blacklist.matches_name("x.a.example"))
        rewrite(self.path, "")
        self.assertFalse(blacklist.matches("a.example"))
        self.assertFalse(blacklist.matches("198.51.100.9"))

    def test_bad_new_file_keeps_the_old_list_and_logs_one_line(self) -> None:
        blacklist = self.load("a.example\n")
        rewrite(self.path, "b.example\nnot a name\n")
        self.assertTrue(blacklist.matches("a.example"))
        self.assertFalse(blacklist.matches("b.example"))
        self.assertEqual(self.errors, [f"{self.path} line 2: 'not a name' is not a domain"
                                       " name, IP address or network;"
                                       " keeping the previous version"])


if __name__ == "__main__":
    unittest.main()
