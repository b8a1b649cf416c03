"""The host validator: which Host values each allowed-host pattern lets through."""

from __future__ import annotations

import unittest

from nex.http.errors import HTTPError
from nex.site.hosts import HostValidator

# (patterns, host, allowed)
CASES = [
    (["*"], "anything.example", True),
    (["*"], "", True),
    (["*"], "[::1]:8080", True),
    (["localhost"], "localhost", True),
    (["localhost"], "LOCALHOST", True),
    (["localhost"], "localhost:8080", True),
    (["localhost"], "localhost.", True),
    (["localhost"], "localhost..", False),
    (["localhost"], "localhost:", True),
    (["localhost"], "localhostx", False),
    (["localhost"], "", False),
    (["localhost"], "localhost:http", False),
    (["localhost"], "localhost:99999", False),
    (["example.com"], "www.example.com", False),
    (["Example.COM."], "example.com", True),
    (["localhost:8080"], "localhost:8080", True),
    (["localhost:8080"], "localhost:8081", False),
    (["localhost:8080"], "localhost", False),
    (["*.example.com"], "www.example.com", True),
    (["*.example.com"], "a.b.example.com", True),
    (["*.example.com"], "WWW.Example.Com.", True),
    (["*.example.com"], "example.com", False),
    (["*.example.com"], "badexample.com", False),
    (["*.example.com"], ".example.com", False),
    (["*.example.com"], "a..example.com", False),
    (["*.example.com"], "example.com.evil.net", False),
    (["*.example.com:443"], "www.example.com:443", True),
    (["*.example.com:443"], "www.example.com:80", False),
    (["127.0.0.1"], "127.0.0.1", True),
    (["127.0.0.1"], "127.0.0.1:8080", True),
    (["127.0.0.1"], "127.0.0.2", False),
    (["::1"], "[::1]", True),
    (["::1"], "[::1]:8080", True),
    (["[::1]"], "[::1]:8080", True),
    (["[::1]"], "[0:0:0:0:0:0:0:1]", True),
    (["[::1]"], "[::2]", False),
    (["[::1]:8080"], "[::1]:8080", True),
    (["[::1]:8080"], "[::1]:9090", False),
    (["[::1]"], "[::1", False),
    (["[::1]"], "[::1]x", False),
    (["[::1]"], "[nonsense]", False),
    (["localhost", "*.example.org"], "cdn.example.org", True),
    (["localhost", "*.example.org"], "example.net", False),
    ([], "localhost", False),
    ([], "", False),
]


class HostValidatorTest(unittest.TestCase):
    def test_patterns(self):
        for patterns, host, allowed in CASES:
            with self.subTest(patterns=patterns, host=host):
                self.assertIs(HostValidator(patterns).allows(host), allowed)

    def test_check_refuses_with_403(self):
        with self.assertRaises(HTTPError) as caught:
            HostValidator(["localhost"]).check("evil.example")
        self.assertEqual(caught.exception.status, 403)

    def test_check_passes_an_allowed_host(self):
        self.assertIsNone(HostValidator(["localhost"]).check("localhost:8080"))

    def test_missing_host_allowed_only_by_star(self):
        self.assertTrue(HostValidator(["*"]).allows(""))
        self.assertFalse(HostValidator(["localhost", "*.localhost"]).allows(""))

    def test_malformed_patterns_fail_at_start_up(self):
        for pattern in ["", "*.", "a..b", "host:port", "[::1", "*.[::1]", "*:80",
                        "exa mple.com", "localhost:70000"]:
            with self.subTest(pattern=pattern):
                with self.assertRaises(ValueError):
                    HostValidator([pattern])

    def test_dns_rebinding_name_is_refused(self):
        validator = HostValidator(["localhost", "127.0.0.1", "[::1]"])
        self.assertFalse(validator.allows("attacker.example:8080"))
        self.assertFalse(validator.allows("localhost.attacker.example"))


if __name__ == "__main__":
    unittest.main()
