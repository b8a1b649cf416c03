"""Unit tests of the per-second time text."""

from __future__ import annotations

import unittest
from unittest import mock

from nex.clock import SecondText


class SecondTextTest(unittest.TestCase):
    def test_formats_once_per_second(self):
        calls = []
        text = SecondText(lambda second: calls.append(second) or f"t{second}")
        with mock.patch("nex.clock.time.time", side_effect=[100.1, 100.9, 101.0, 101.5]):
            self.assertEqual([text.now() for _ in range(4)], ["t100", "t100", "t101", "t101"])
        self.assertEqual(calls, [100, 101])

    def test_a_clock_set_back_is_followed(self):
        text = SecondText(str)
        with mock.patch("nex.clock.time.time", side_effect=[200.0, 150.0]):
            self.assertEqual([text.now(), text.now()], ["200", "150"])


if __name__ == "__main__":
    unittest.main()
