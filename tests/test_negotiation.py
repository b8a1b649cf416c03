"""Weights and Accept, parsed once for every handler (nex.http.negotiation)."""

from __future__ import annotations

import unittest

from nex.http.negotiation import MediaRange, media_ranges, weight


class WeightTest(unittest.TestCase):
    def test_weights(self) -> None:
        for qvalue, expected in [(None, 1000), ("1", 1000), ("1.", 1000), ("1.000", 1000),
                                 ("0", 0), ("0.5", 500), ("0.05", 50), ("0.123", 123)]:
            with self.subTest(qvalue=qvalue):
                self.assertEqual(weight(qvalue), expected)


class MediaRangesTest(unittest.TestCase):
    def test_ranges(self) -> None:
        for accept, expected in [
                ("text/html", [("text", "html", 1000)]),
                ("Text/HTML;level=1;q=0.5, */*;q=0", [("text", "html", 500), ("*", "*", 0)]),
                ("application/*, , text/plain", [("application", "*", 1000),
                                                 ("text", "plain", 1000)]),
                ("", [])]:
            with self.subTest(accept=accept):
                self.assertEqual(media_ranges(accept),
                                 tuple(MediaRange(*media) for media in expected))

    def test_malformed(self) -> None:
        for accept in ["text", "text/html;q=2", "*/html", "text/html text/plain", "a/b;q"]:
            with self.subTest(accept=accept):
                self.assertIsNone(media_ranges(accept))


if __name__ == "__main__":
    unittest.main()
