"""``[proxy] pac = yes``: the proxy auto-config file at /proxy.pac, naming Nex as the client
reached it."""

from __future__ import annotations

import unittest

from nex.proxy.pac import pac_script, proxy_address
from tests.support import ProxyTestCase, proxy_settings


class ProxyAddressTest(unittest.TestCase):
    def test_host_field_or_fallback(self) -> None:
        for host, expected in (("proxy.example:3128", "proxy.example:3128"),
                               ("Proxy.Example.", "proxy.example:8080"),
                               ("[::1]:3128", "[::1]:3128"),
                               ("", "192.0.2.1:8080"),
                               ('x");alert(1);//', "192.0.2.1:8080")):
            with self.subTest(host=host):
                self.assertEqual(proxy_address(host, "192.0.2.1", 8080), expected)
        self.assertEqual(proxy_address("", "::1", 8080), "[::1]:8080")

    def test_script(self) -> None:
        script = pac_script("proxy.example:3128").decode()
        self.assertTrue(script.startswith("function FindProxyForURL(url, host) {"))
        self.assertIn('return "PROXY proxy.example:3128; DIRECT";', script)


class PacServedTest(ProxyTestCase):
    settings = proxy_settings(pac="yes")

    def test_proxy_pac_names_nex(self) -> None:
        response, body = self.fetch("GET", "/proxy.pac")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.getheader("Content-Type"), "application/x-ns-proxy-autoconfig")
        self.assertIn(f'"PROXY 127.0.0.1:{self.server.port}; DIRECT"'.encode(), body)
        response, body = self.fetch("GET", "/proxy.pac", headers={"Host": "proxy.example:3128"})
        self.assertIn(b'"PROXY proxy.example:3128; DIRECT"', body)

    def test_other_methods_are_405(self) -> None:
        response, _ = self.fetch("POST", "/proxy.pac", body=b"")
        self.assertEqual((response.status, response.getheader("Allow")), (405, "GET, HEAD"))

    def test_the_files_are_still_served(self) -> None:
        self.assertEqual(self.fetch("GET", "/hello.txt")[1], b"hello, world\n")


class PacOffTest(ProxyTestCase):
    def test_no_proxy_pac_by_default(self) -> None:
        self.assertEqual(self.fetch("GET", "/proxy.pac")[0].status, 404)
