"""IP addresses as Nex compares them: both spellings of an IPv4-mapped address."""

from __future__ import annotations

import ipaddress
import unittest

from nex.addresses import address_forms, in_networks, parse_address, plain_address, unmapped

MAPPED = ipaddress.ip_address("::ffff:192.0.2.7")
PLAIN = ipaddress.ip_address("192.0.2.7")
NETWORKS = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32"))


class AddressFormsTest(unittest.TestCase):
    def test_mapped_address_has_both_forms_and_others_one(self) -> None:
        self.assertEqual(address_forms(MAPPED), (MAPPED, PLAIN))
        self.assertEqual(address_forms(PLAIN), (PLAIN,))
        v6 = ipaddress.ip_address("2001:db8::7")
        self.assertEqual(address_forms(v6), (v6,))

    def test_remembered_forms_never_mix_an_address_with_its_mapped_spelling(self) -> None:
        for address, expected in ((PLAIN, (PLAIN,)), (MAPPED, (MAPPED, PLAIN)),
                                  (PLAIN, (PLAIN,)), (MAPPED, (MAPPED, PLAIN))):
            with self.subTest(address=address):
                self.assertEqual(address_forms(address), expected)
                self.assertEqual(address_forms(address)[0].version, address.version)

    def test_unmapped_and_plain(self) -> None:
        self.assertEqual(unmapped(MAPPED), PLAIN)
        self.assertEqual(plain_address("::ffff:192.0.2.7"), "192.0.2.7")
        self.assertEqual(plain_address("fe80::1%eth0"), "fe80::1%eth0")
        self.assertEqual(plain_address("not an address"), "not an address")
        self.assertEqual(parse_address("fe80::1%eth0"), ipaddress.ip_address("fe80::1"))


class InNetworksTest(unittest.TestCase):
    def test_mapped_address_in_an_ipv4_network_bypass(self) -> None:
        self.assertTrue(in_networks(MAPPED, NETWORKS))
        self.assertTrue(in_networks(PLAIN, NETWORKS))
        self.assertTrue(in_networks(ipaddress.ip_address("2001:db8::1"), NETWORKS))

    def test_outside_and_empty(self) -> None:
        self.assertFalse(in_networks(ipaddress.ip_address("198.51.100.1"), NETWORKS))
        self.assertFalse(in_networks(ipaddress.ip_address("::ffff:198.51.100.1"), NETWORKS))
        self.assertFalse(in_networks(PLAIN, ()))
        self.assertTrue(in_networks(PLAIN, iter(NETWORKS)))
