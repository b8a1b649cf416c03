"""Validators and preconditions (RFC 9110 §8.8, §13): dates, entity tags, 304 and 412."""

from __future__ import annotations

import unittest

from hypothesis import given, settings, strategies as st

from nex.http.dates import format_http_date, parse_http_date
from nex.http.conditional import ANY, if_range_holds, make_etag, not_modified, parse_etag_list
from nex.http.errors import HTTPError
from nex.http.request import Headers
from tests.support import MTIME, MTIME_DATE, TempFiles, fields

NOW_2024 = 1_718_000_000.0
ETAG = '"e"'
LAST_MODIFIED = 1000
BEFORE, EQUAL, AFTER = (format_http_date(LAST_MODIFIED + delta) for delta in (-1, 0, 1))


class DateFuzzTest(unittest.TestCase):
    """Date-shaped junk is rejected or read, never a crash."""

    @settings(max_examples=300, deadline=None)
    @given(day=st.integers(0, 99), month=st.sampled_from(["Jan", "Feb", "Apr", "Dec", "Foo"]),
           year=st.integers(0, 9999), hour=st.integers(0, 99), minute=st.integers(0, 99),
           second=st.integers(0, 99))
    def test_every_field_value(self, day, month, year, hour, minute, second) -> None:
        clock = f"{hour:02d}:{minute:02d}:{second:02d}"
        for value in (f"Sun, {day:02d} {month} {year:04d} {clock} GMT",
                      f"Sunday, {day:02d}-{month}-{year % 100:02d} {clock} GMT",
                      f"Sun {month} {day:2d} {clock} {year:04d}"):
            result = parse_http_date(value, NOW_2024)
            if result is not None:
                self.assertLessEqual(hour, 23)
                self.assertLessEqual(minute, 59)

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=40))
    def test_arbitrary_text(self, value: str) -> None:
        parse_http_date(value)
        parse_etag_list(value)
        if_range_holds(value, ETAG, LAST_MODIFIED, NOW_2024)


class EntityTagTest(unittest.TestCase):
    """Entity-tag lists parsed exactly (RFC 9110 §8.8.3, §13.1.1)."""

    VALID = [
        ('"a"', [(False, '"a"')]),
        ('W/"a"', [(True, '"a"')]),
        ('""', [(False, '""')]),
        ('"a", W/"b" ,"c"', [(False, '"a"'), (True, '"b"'), (False, '"c"')]),
        ('"a,b"', [(False, '"a,b"')]),
        ('"a" , , "b",', [(False, '"a"'), (False, '"b"')]),
        ('\t"a"\t', [(False, '"a"')]),
        ('"caf\u00e9"', [(False, '"caf\u00e9"')]),
        ("", []),
        (", ,", []),
        ("*", ANY),
    ]
    MALFORMED = ["a", '"a', 'a"', 'w/"a"', 'W/ "a"', '"a" "b"', '"a"x', '"a b"', '"a\x7f"',
                 '*, "a"', '"a", *', "**", 'W/', '"a";"b"']

    def test_valid(self) -> None:
        for value, expected in self.VALID:
            with self.subTest(value=value):
                self.assertEqual(parse_etag_list(value), expected)

    def test_malformed(self) -> None:
        for value in self.MALFORMED:
            with self.subTest(value=value):
                self.assertIsNone(parse_etag_list(value))

    def test_make_etag(self) -> None:
        self.assertEqual(make_etag(255, 16), '"ff-10"')
        self.assertEqual(make_etag(0, 1, "-br"), '"0-1-br"')




class PreconditionOrderTest(unittest.TestCase):
    """RFC 9110 §13.2.2: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since."""

    CASES = [
        ([], "GET", "go"),
        # If-Match: strong comparison; a failed or malformed list is 412.
        ([("If-Match", '"e"')], "GET", "go"),
        ([("If-Match", '"x", "e"')], "GET", "go"),
        ([("If-Match", "*")], "GET", "go"),
        ([("If-Match", '"x"')], "GET", 412),
        ([("If-Match", 'W/"e"')], "GET", 412),
        ([("If-Match", "e")], "GET", 412),
        ([("If-Match", "")], "GET", 412),
        ([("If-Match", '"x"'), ("If-Match", '"e"')], "GET", "go"),
        # If-Unmodified-Since, only without If-Match; malformed dates are ignored.
        ([("If-Unmodified-Since", EQUAL)], "GET", "go"),
        ([("If-Unmodified-Since", AFTER)], "GET", "go"),
        ([("If-Unmodified-Since", BEFORE)], "GET", 412),
        ([("If-Unmodified-Since", "yesterday")], "GET", "go"),
        ([("If-Match", '"e"'), ("If-Unmodified-Since", BEFORE)], "GET", "go"),
        ([("If-Match", '"x"'), ("If-Unmodified-Since", AFTER)], "GET", 412),
        # 412 wins over 304.
        ([("If-Match", '"x"'), ("If-None-Match", '"e"')], "GET", 412),
        ([("If-Unmodified-Since", BEFORE), ("If-None-Match", '"e"')], "GET", 412),
        # If-None-Match: weak comparison.
        ([("If-None-Match", '"e"')], "GET", 304),
        ([("If-None-Match", '"e"')], "HEAD", 304),
        ([("If-None-Match", 'W/"e"')], "GET", 304),
        ([("If-None-Match", '"x", W/"e"')], "GET", 304),
        ([("If-None-Match", "*")], "GET", 304),
        ([("If-None-Match", '"x"')], "GET", "go"),
        ([("If-None-Match", '"e')], "GET", "go"),
        ([("If-None-Match", '"e"')], "POST", 412),
        ([("If-None-Match", "*")], "PUT", 412),
        # If-Modified-Since, only without If-None-Match and only for GET/HEAD.
        ([("If-Modified-Since", EQUAL)], "GET", 304),
        ([("If-Modified-Since", AFTER)], "HEAD", 304),
        ([("If-Modified-Since", "Fri, 01 Jan 9999 00:00:00 GMT")], "GET", 304),
        ([("If-Modified-Since", BEFORE)], "GET", "go"),
        ([("If-Modified-Since", "Sunday, 01-Jan-70 00:16:40 GMT")], "GET", 304),
        ([("If-Modified-Since", "Thu Jan  1 00:16:40 1970")], "GET", 304),
        ([("If-Modified-Since", "not a date")], "GET", "go"),
        ([("If-Modified-Since", EQUAL), ("If-Modified-Since", EQUAL)], "GET", "go"),
        ([("If-Modified-Since", EQUAL)], "POST", "go"),
        ([("If-None-Match", '"x"'), ("If-Modified-Since", EQUAL)], "GET", "go"),
        ([("If-None-Match", '"e"'), ("If-Modified-Since", BEFORE)], "GET", 304),
    ]

    def test_table(self) -> None:
        for request_fields, method, expected in self.CASES:
            with self.subTest(fields=request_fields, method=method):
                headers = Headers(list(request_fields))
                try:
                    outcome = 304 if not_modified(headers, method, ETAG,
                                                  LAST_MODIFIED) else "go"
                except HTTPError as error:
                    outcome = error.status
                self.assertEqual(outcome, expected)

    def test_412_carries_the_given_fields(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            not_modified(Headers([("If-Match", '"x"')]), "GET", ETAG, LAST_MODIFIED,
                         [("Vary", "Accept-Encoding")])
        self.assertEqual(caught.exception.headers, (("Vary", "Accept-Encoding"),))

    def test_weak_etag_never_satisfies_if_match(self) -> None:
        with self.assertRaises(HTTPError):
            not_modified(Headers([("If-Match", 'W/"e"')]), "GET", ETAG, LAST_MODIFIED)

    def test_malformed_if_match_fails_closed(self) -> None:
        for value in ('"e', "e", '"e" junk', '*, "e"'):
            with self.subTest(value=value), self.assertRaises(HTTPError):
                not_modified(Headers([("If-Match", value)]), "GET", ETAG, LAST_MODIFIED)


class IfRangeTest(unittest.TestCase):
    """If-Range: a strong entity-tag or the exact Last-Modified date (RFC 9110 §13.1.5)."""

    CASES = [
        ('"e"', NOW_2024, True),
        ('W/"e"', NOW_2024, False),
        ('"x"', NOW_2024, False),
        ('"e", "x"', NOW_2024, False),
        ('"e', NOW_2024, False),
        (EQUAL, NOW_2024, True),
        ("Thu Jan  1 00:16:40 1970", NOW_2024, True),
        (BEFORE, NOW_2024, False),
        (AFTER, NOW_2024, False),
        ("garbage", NOW_2024, False),
        ("", NOW_2024, False),
        # A date names a whole second: while that second lasts the file may change again
        # without its Last-Modified changing, so the date is only a weak validator.
        (EQUAL, LAST_MODIFIED + 0.5, False),
        (EQUAL, LAST_MODIFIED + 1, True),
    ]

    def test_table(self) -> None:
        for value, now, expected in self.CASES:
            with self.subTest(value=value, now=now):
                self.assertIs(if_range_holds(value, ETAG, LAST_MODIFIED, now), expected)


class ConditionalResponseTest(TempFiles):
    """Preconditions through serve_file: what a 304 carries, when a 412 is raised."""

    def setUp(self) -> None:
        super().setUp()
        self.file = self.target("a.css", b"body { color: red }")
        self.etag = fields(self.serve(self.file))["etag"]

    def test_304_for_current_etag(self) -> None:
        for method in ("GET", "HEAD"):
            with self.subTest(method=method):
                response = self.serve(self.file, [("If-None-Match", self.etag)], method,
                                      max_age={".css": 60}, precompressed=False)
                self.assertEqual(response.status, 304)
                self.assertEqual(list(response.body), [])
                self.assertIsNone(response.file)
                self.assertEqual(fields(response), {
                    "etag": self.etag, "last-modified": MTIME_DATE,
                    "cache-control": "max-age=60"})

    def test_304_for_last_modified_date(self) -> None:
        response = self.serve(self.file, [("If-Modified-Since", MTIME_DATE)])
        self.assertEqual(response.status, 304)

    def test_200_when_changed(self) -> None:
        changed = self.target("a.css", b"body { color: blue }", MTIME + 5)
        response = self.serve(changed, [("If-None-Match", self.etag),
                                        ("If-Modified-Since", MTIME_DATE)])
        self.assertEqual(response.status, 200)

    def test_412_for_stale_if_match(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            self.serve(self.file, [("If-Match", '"0-0"')])
        self.assertEqual(caught.exception.status, 412)

    def test_if_match_current_serves(self) -> None:
        self.assertEqual(self.serve(self.file, [("If-Match", self.etag)]).status, 200)

    def test_if_unmodified_since_before_mtime_is_412(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            self.serve(self.file, [("If-Unmodified-Since", format_http_date(MTIME - 1))])
        self.assertEqual(caught.exception.status, 412)

    def test_preconditions_before_range(self) -> None:
        response = self.serve(self.file, [("If-None-Match", self.etag),
                                          ("Range", "bytes=0-1")])
        self.assertEqual(response.status, 304)
        with self.assertRaises(HTTPError) as caught:
            self.serve(self.file, [("If-Match", '"x"'), ("Range", "bytes=999-")])
        self.assertEqual(caught.exception.status, 412)


if __name__ == "__main__":
    unittest.main()
