"""The PROXY protocol header parser (nex.http.proxy_header): table-driven cases and fuzzing."""

from __future__ import annotations

import ipaddress
import unittest

from hypothesis import given, settings, strategies as st

from nex.http.proxy_header import (MAX_LENGTH, V1_MAX_LENGTH, V2_MAX_LENGTH, V2_SIGNATURE,
                                   ProxyHeader, ProxyHeaderError, parse,
                                   starts_like_proxy_header)
from tests.support.proxy_headers import ipv4, ipv6, tlv, v2


V1_GOOD = (
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n", "192.0.2.7", 56324),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n", "2001:db8::7", 40000),
    (b"PROXY TCP6 2001:DB8::7 2001:db8::1 0 65535\r\n", "2001:db8::7", 0),
    (b"PROXY UNKNOWN\r\n", None, None),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None, None),
)
V1_BAD = (
    b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n",       # bare LF
    b"PROXY TCP4 192.0.2.7  198.51.100.1 56324 443\r\n",    # two spaces
    b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",          # a port missing
    b"PROXY TCP4 192.0.2.7 198.51.100.1 065 443\r\n",        # leading zero
    b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",      # port out of range
    b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",          # IPv6 under TCP4
    b"PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n",             # IPv4 under TCP6
    b"PROXY TCP4 192.0.2.007 198.51.100.1 1 2\r\n",          # octet with leading zeros
    b"PROXY TCP4 999.0.2.7 198.51.100.1 1 2\r\n",
    b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
    b"PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n",
    b"PROXY UNKNOWN\x00\r\n",
    b"PROXY \r\n",
    b"PROXX TCP4 192.0.2.7 198.51.100.1 1 2\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",               # longer than 107 bytes
)
V2_GOOD = (
    (v2(addresses=ipv4()), "192.0.2.7", 56324),
    (v2(family=0x21, addresses=ipv6()), "2001:db8::7", 40000),
    (v2(addresses=ipv4(), tlvs=tlv(0x01, b"h2") + tlv(0x04, b"") + tlv(0xE0, b"x" * 300)),
     "192.0.2.7", 56324),
    (v2(command=0x20, family=0x00), None, None),                       # LOCAL: health check
    (v2(command=0x20, family=0x11, addresses=ipv4()), None, None),     # LOCAL ignores them
    (v2(family=0x00, tlvs=tlv(0x05, b"id")), None, None),               # UNSPEC
    (v2(family=0x31, addresses=b"/run/x".ljust(216, b"\0")), None, None),
)
V2_BAD = (
    v2(command=0x11, addresses=ipv4()),                      # version 1 in the binary form
    v2(command=0x22, addresses=ipv4()),                      # unknown command
    v2(family=0x12, addresses=ipv4()),                       # UDP
    v2(family=0x41, addresses=ipv4()),                       # unknown family
    v2(addresses=ipv4()[:11]),                               # addresses cut short
    v2(addresses=ipv4(), tlvs=b"\x01\x00"),                  # TLV head cut short
    v2(addresses=ipv4(), tlvs=b"\x01\x00\x05abc"),           # TLV value runs past the end
    v2(addresses=ipv4(), length=V2_MAX_LENGTH),              # longer than Nex takes
    b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + ipv4(),      # bad signature
)


class ParseTests(unittest.TestCase):
    def test_good_version_1_headers(self) -> None:
        for line, client, port in V1_GOOD:
            with self.subTest(line=line):
                self.assertEqual(parse(line + b"GET / HTTP/1.1\r\n"),
                                 ProxyHeader(1, len(line), client, port))

    def test_bad_version_1_headers(self) -> None:
        for line in V1_BAD:
            with self.subTest(line=line):
                with self.assertRaises(ProxyHeaderError):
                    parse(line + b"\r\n" + b"y" * 120)

    def test_good_version_2_headers(self) -> None:
        for header, client, port in V2_GOOD:
            with self.subTest(header=header):
                self.assertEqual(parse(header + b"\x16\x03\x01"),
                                 ProxyHeader(2, len(header), client, port))

    def test_bad_version_2_headers(self) -> None:
        for header in V2_BAD:
            with self.subTest(header=header):
                with self.assertRaises(ProxyHeaderError):
                    parse(header + b"z" * 64)

    def test_every_short_prefix_asks_for_more(self) -> None:
        for header, _, _ in V2_GOOD + tuple((line, None, None) for line, _, _ in V1_GOOD):
            for end in range(len(header)):
                with self.subTest(header=header, end=end):
                    self.assertIsNone(parse(header[:end]))

    def test_versions_setting_refuses_the_other_version(self) -> None:
        one, two = V1_GOOD[0][0], V2_GOOD[0][0]
        self.assertEqual(parse(one, "v1").version, 1)
        self.assertEqual(parse(two, "v2").version, 2)
        with self.assertRaisesRegex(ProxyHeaderError, "only version 2"):
            parse(one, "v2")
        with self.assertRaisesRegex(ProxyHeaderError, "only version 1"):
            parse(two, "v1")

    def test_version_2_header_is_bounded_before_it_is_read(self) -> None:
        # The length field alone is enough to refuse: Nex never waits for 64K of header.
        with self.assertRaisesRegex(ProxyHeaderError, "longer than"):
            parse(v2(length=0xFFFF)[:16])

    def test_version_1_line_without_end_is_bounded(self) -> None:
        self.assertIsNone(parse(b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 15)))
        with self.assertRaises(ProxyHeaderError):
            parse(b"PROXY UNKNOWN " + b"x" * V1_MAX_LENGTH)

    def test_what_starts_like_a_header(self) -> None:
        self.assertTrue(starts_like_proxy_header(V1_GOOD[0][0]))
        self.assertTrue(starts_like_proxy_header(V2_GOOD[0][0]))
        for start in (b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00\x01", b"\r\n\r\nGET /",
                      b"PROXY", b"PROXYX "):
            self.assertFalse(starts_like_proxy_header(start), start)


class FuzzTests(unittest.TestCase):
    """Any bytes: parse returns a header no longer than the input, None, or refuses."""

    def check(self, data: bytes) -> None:
        try:
            header = parse(data)
        except ProxyHeaderError:
            return
        if header is None:
            self.assertLess(len(data), MAX_LENGTH)
            return
        self.assertLessEqual(header.length, len(data))
        self.assertLessEqual(header.length, MAX_LENGTH)
        if header.client is not None:
            ipaddress.ip_address(header.client)
        # The header's own bytes say the same on their own: parse never reads past them.
        self.assertEqual(parse(data[:header.length]), header)

    @settings(max_examples=1500, deadline=None)
    @given(st.binary(max_size=300))
    def test_random_bytes(self, data: bytes) -> None:
        self.check(data)

    @settings(max_examples=1500, deadline=None)
    @given(st.sampled_from([b"PROXY ", V2_SIGNATURE, V2_SIGNATURE + b"\x21\x11",
                            V2_SIGNATURE + b"\x21\x21\x00", b"PROXY TCP4 ", b"PROXY UNKNOWN"]),
           st.binary(max_size=300))
    def test_valid_starts_with_random_rest(self, start: bytes, rest: bytes) -> None:
        self.check(start + rest)

    @settings(max_examples=1000, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=8),
           st.integers(-4, 4))
    def test_tlvs_with_lengths_off_by_a_little(self, tlvs, skew: int) -> None:
        body = b"".join(tlv(kind, value) for kind, value in tlvs)
        header = v2(addresses=ipv4(), tlvs=body, length=max(0, 12 + len(body) + skew))
        self.check(header + b"\x00" * 8)
        if skew == 0:
            self.assertEqual(parse(header).client, "192.0.2.7")


if __name__ == "__main__":
    unittest.main()
