"""Date text: the per-second cache, HTTP-dates both ways, and Common Log Format times."""

from __future__ import annotations

import email.utils
import sys
import threading
import time
import unittest
from unittest import mock

from nex.http.dates import (SecondText, clf_time_now, format_clf_time, format_http_date,
                       http_date_now, parse_http_date)

NOV_1994 = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's own example
NOW_2024 = 1_718_000_000.0
MTIME = 1_600_000_000


class SecondTextTest(unittest.TestCase):
    def test_formats_once_per_second(self):
        calls = []
        text = SecondText(lambda second: calls.append(second) or f"t{second}")
        with mock.patch("nex.http.dates.time.time", side_effect=[100.1, 100.9, 101.0, 101.5]):
            self.assertEqual([text.now() for _ in range(4)], ["t100", "t100", "t101", "t101"])
        self.assertEqual(calls, [100, 101])

    def test_a_clock_set_back_is_followed(self):
        text = SecondText(str)
        with mock.patch("nex.http.dates.time.time", side_effect=[200.0, 150.0]):
            self.assertEqual([text.now(), text.now()], ["200", "150"])

    def test_threads_never_get_another_seconds_text(self):
        # Half the threads live in second 100, half in 101, so the cached second changes on
        # nearly every call.  A tracer hands the processor to another thread between any
        # two lines of now(), so that a second and a text stored or read apart would be
        # caught mixing one second with another's text.
        own_second = threading.local()
        text = SecondText(lambda second: f"t{second}")
        wrong = []
        start = threading.Barrier(6)

        def yield_between_lines(frame, event, arg):
            if event == "line":
                time.sleep(0)
            return yield_between_lines

        def trace_now(frame, event, arg):
            return yield_between_lines if frame.f_code is SecondText.now.__code__ else None

        def reader(second: int) -> None:
            own_second.value = second
            start.wait()
            sys.settrace(trace_now)
            for _ in range(2000):
                got = text.now()
                if got != f"t{second}":
                    wrong.append((second, got))
            sys.settrace(None)

        with mock.patch("nex.http.dates.time.time", new=lambda: own_second.value + 0.5):
            threads = [threading.Thread(target=reader, args=(100 + index % 2,))
                       for index in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.assertEqual(wrong, [])


class ClockTextTest(unittest.TestCase):
    """The current second's texts and the Common Log Format time."""

    def test_clf_time(self):
        self.assertEqual(format_clf_time(NOV_1994), "06/Nov/1994:08:49:37 +0000")
        self.assertEqual(format_clf_time(NOV_1994 + 0.9), "06/Nov/1994:08:49:37 +0000")
        self.assertEqual(format_clf_time(0), "01/Jan/1970:00:00:00 +0000")

    def test_now_texts_are_the_current_second(self):
        with mock.patch("nex.http.dates.time.time", return_value=NOV_1994 + 0.5):
            self.assertEqual(http_date_now(), "Sun, 06 Nov 1994 08:49:37 GMT")
            self.assertEqual(clf_time_now(), "06/Nov/1994:08:49:37 +0000")


class HttpDateTest(unittest.TestCase):
    """HTTP-date in its three forms, exactly (RFC 9110 §5.6.7)."""

    VALID = [
        ("Sun, 06 Nov 1994 08:49:37 GMT", NOV_1994),
        ("Sunday, 06-Nov-94 08:49:37 GMT", NOV_1994),
        ("Sun Nov  6 08:49:37 1994", NOV_1994),
        ("Wed Nov 16 08:49:37 1994", NOV_1994 + 10 * 86400),
        ("Thu, 29 Feb 2024 00:00:00 GMT", 1709164800),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Sun, 06 Nov 1994 08:49:60 GMT", NOV_1994 + 23),
        # Weekdays are not cross-checked against the date.
        ("Mon, 06 Nov 1994 08:49:37 GMT", NOV_1994),
        # Two-digit years: within 50 years ahead stays in this century.
        ("Tuesday, 01-Jan-30 00:00:00 GMT", 1893456000),
        ("Friday, 01-Jan-99 00:00:00 GMT", 915148800),
    ]
    INVALID = [
        "",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT",
        "Sun,  06 Nov 1994 08:49:37 GMT",
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Wed, 29 Feb 2023 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
        "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov 06 08:49:37 1994 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "1994-11-06T08:49:37Z",
        "784111777",
        "-1",
    ]

    def test_valid(self) -> None:
        for value, expected in self.VALID:
            with self.subTest(value=value):
                self.assertEqual(parse_http_date(value, NOW_2024), expected)

    def test_invalid(self) -> None:
        for value in self.INVALID:
            with self.subTest(value=value):
                self.assertIsNone(parse_http_date(value, NOW_2024))

    def test_year_zero_does_not_crash(self) -> None:
        self.assertIsNone(parse_http_date("Sun, 06 Nov 0000 08:49:37 GMT"))
        self.assertIsNone(parse_http_date("Sun Nov  6 08:49:37 0000"))
        self.assertEqual(parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"), 253402300799)

    def test_rfc850_year_more_than_50_years_ahead_is_last_century(self) -> None:
        self.assertEqual(parse_http_date("Thursday, 01-Jan-80 00:00:00 GMT", NOW_2024),
                         315532800)

    def test_format_matches_email_utils(self) -> None:
        for seconds in (0, NOV_1994, MTIME, 1709164800, 4102444799, 253402300799):
            with self.subTest(seconds=seconds):
                self.assertEqual(format_http_date(seconds),
                                 email.utils.formatdate(seconds, usegmt=True))

    def test_format_parses_back(self) -> None:
        for seconds in range(0, 4_000_000_000, 97_654_321):
            self.assertEqual(parse_http_date(format_http_date(seconds)), seconds)


if __name__ == "__main__":
    unittest.main()
