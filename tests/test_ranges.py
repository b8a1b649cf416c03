"""Byte ranges (RFC 9110 §14): parsing, selection, multipart bodies and the 206/416 replies."""

from __future__ import annotations

import unittest

from nex.http.dates import format_http_date
from nex.http.errors import HTTPError
from nex.http import ranges as ranges_module
from nex.http.ranges import coalesce, multipart_body, parse_range, satisfiable, select_ranges
from nex.http.response import FileSlice
from tests.support import MTIME, MTIME_DATE, TempFiles, body_bytes, fields, parse_multipart

HUGE = "9" * 40


class ParseRangeTest(unittest.TestCase):
    """The Range field's grammar, exactly; anything else means "ignore the field"."""

    VALID = [
        ("bytes=0-499", [(0, 499)]),
        ("bytes=500-", [(500, None)]),
        ("bytes=-500", [(None, 500)]),
        ("bytes=0-0,-1", [(0, 0), (None, 1)]),
        ("Bytes=0-1", [(0, 1)]),
        ("BYTES=0-1", [(0, 1)]),
        ("bytes=0-1, 3-4", [(0, 1), (3, 4)]),
        ("bytes=0-1 ,\t3-4", [(0, 1), (3, 4)]),
        ("bytes=,0-1", [(0, 1)]),
        ("bytes=0-1,", [(0, 1)]),
        ("bytes=0-1, ,2-3", [(0, 1), (2, 3)]),
        ("bytes=007-010", [(7, 10)]),
        ("bytes=0-0", [(0, 0)]),
        ("bytes=-0", [(None, 0)]),
        ("bytes=5-5", [(5, 5)]),
        ("bytes=" + HUGE + "-", [(10 ** 19, None)]),
        ("bytes=0-" + HUGE, [(0, 10 ** 19)]),
        ("bytes=" + HUGE + "-" + HUGE, [(10 ** 19, 10 ** 19)]),
    ]
    IGNORED = [
        "", "bytes", "bytes=", "bytes=,", "bytes=, ,", "items=0-1", "none", "bytes =0-1",
        "bytes= 0-1", "bytes=0-1 ", " bytes=0-1", "bytes=0 -1", "bytes=0- 1", "bytes=+1-2",
        "bytes=1-+2", "bytes=1_0-20", "bytes=-", "bytes=1-2-3", "bytes=5-4",
        "bytes=0x10-20", "bytes=\u0660-1", "bytes=1.0-2", "bytes=--1", "bytes=-1-",
        "bytes=0-1;q=1", "bytes=a-b", "bytes=0-1, bytes=2-3", "bytes=0-1,other",
        "bytes=0-1,,x", "bytes==0-1", "bytes\u0130=0-1", "byte\u017f=0-1", "bytes=-\u00b9",
        "bytes=" + HUGE + "1-" + HUGE, "bytes=10-09", "bytes=0-1\r\n",
    ]

    def test_valid(self) -> None:
        for value, expected in self.VALID:
            with self.subTest(value=value):
                self.assertEqual(parse_range(value, 16), expected)

    def test_ignored(self) -> None:
        for value in self.IGNORED:
            with self.subTest(value=value):
                self.assertIsNone(parse_range(value, 16))

    def test_count_limit_ignores_empty_elements(self) -> None:
        self.assertIsNone(parse_range("bytes=0-0,1-1,2-2", 2))
        self.assertEqual(len(parse_range("bytes=0-0,,1-1,", 2)), 2)

    def test_signed_or_underscored_numbers_are_not_ranges(self) -> None:
        # int() would accept all of these; the digit grammar must not.
        for number in ("+5", "-5", " 5", "5 ", "5_0", "\uff15", "\u0665"):
            with self.subTest(number=number):
                self.assertIsNone(parse_range(f"bytes={number}-10", 16))
                self.assertIsNone(parse_range(f"bytes=0-{number}", 16))

    def test_huge_range_numbers_do_not_crash(self) -> None:
        digits = "1" * 5000
        self.assertEqual(parse_range(f"bytes={digits}-", 16), [(10 ** 19, None)])
        self.assertEqual(parse_range(f"bytes=-{digits}", 16), [(None, 10 ** 19)])
        self.assertIsNone(parse_range(f"bytes={digits}2-{digits}1", 16))


class SelectRangesTest(unittest.TestCase):
    """Satisfiable ranges, coalescing and the abuse limits on a 100-byte representation."""

    CASES = [
        ("bytes=0-9", [(0, 9)]),
        ("bytes=90-200", [(90, 99)]),
        ("bytes=99-", [(99, 99)]),
        ("bytes=-10", [(90, 99)]),
        ("bytes=-100", [(0, 99)]),
        ("bytes=-200", [(0, 99)]),
        ("bytes=0-" + HUGE, [(0, 99)]),
        ("bytes=50-,200-", [(50, 99)]),
        ("bytes=0-9,20-29", [(0, 9), (20, 29)]),
        ("bytes=20-29,0-9", [(0, 9), (20, 29)]),
        ("bytes=0-9,10-19", [(0, 19)]),
        ("bytes=0-9,11-19", [(0, 9), (11, 19)]),
        ("bytes=0-9,5-14", [(0, 14)]),
        ("bytes=0-9,5-14,8-20", [(0, 20)]),
        ("bytes=0-9,2-3", [(0, 9)]),
        ("bytes=0-,0-", [(0, 99)]),
        ("bytes=-1,0-0", [(0, 0), (99, 99)]),
        # Nothing satisfiable: 416.
        ("bytes=100-", []),
        ("bytes=100-200", []),
        ("bytes=-0", []),
        ("bytes=100-,-0", []),
        ("bytes=" + HUGE + "-", []),
        # Ignored: malformed, or shaped to amplify the response.
        ("bytes=5-4", None),
        ("bytes=0-9,1-9,2-9,3-9", None),
        ("bytes=0-,0-,0-", None),
        ("bytes=-100,-100,-1", None),
        ("bytes=" + ",".join(f"{n}-{n}" for n in range(17)), None),
        ("bytes=" + ",".join("200-" for _ in range(17)), None),
    ]

    def test_table(self) -> None:
        for value, expected in self.CASES:
            with self.subTest(value=value):
                self.assertEqual(select_ranges(value, 100, 16), expected)

    def test_empty_representation_satisfies_nothing(self) -> None:
        for value in ("bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-" + HUGE):
            with self.subTest(value=value):
                self.assertEqual(select_ranges(value, 0, 16), [])

    def test_one_int_range_is_answered_as_the_general_steps_answer_it(self) -> None:
        digits = ("0", "7", "00012", "99", "100", "101", "999999999999999999", "1" + "0" * 18)
        for first in digits:
            for last in digits:
                for unit in ("bytes", "BYTES", "Bytes"):
                    value = f"{unit}={first}-{last}"
                    for size in (0, 1, 12, 100, 10 ** 18 + 5):
                        with self.subTest(value=value, size=size):
                            self.assertEqual(select_ranges(value, size, 16),
                                             ranges_module._select(value, size, 16))
        self.assertIsNone(select_ranges("bytes=0-9", 100, 0))

    def test_satisfiable_keeps_request_order(self) -> None:
        self.assertEqual(satisfiable([(20, 29), (None, 5), (500, None)], 100),
                         [(20, 29), (95, 99)])

    def test_coalesce(self) -> None:
        self.assertEqual(coalesce([(5, 6), (0, 1), (2, 3), (9, 9)]), [(0, 3), (5, 6), (9, 9)])
        self.assertEqual(coalesce([(0, 50), (10, 20)]), [(0, 50)])


class MultipartBodyTest(unittest.TestCase):
    """multipart/byteranges framing (RFC 9110 §14.6)."""

    def test_layout(self) -> None:
        content_type, pieces = multipart_body([(0, 1), (5, 9)], 10, "text/plain")
        boundary = content_type.split("boundary=")[1]
        self.assertRegex(boundary, r"\A[0-9a-f]{32}\Z")
        self.assertEqual(pieces[1], FileSlice(0, 2))
        self.assertEqual(pieces[3], FileSlice(5, 5))
        self.assertEqual(pieces[0], (f"--{boundary}\r\nContent-Type: text/plain\r\n"
                                     "Content-Range: bytes 0-1/10\r\n\r\n").encode())
        self.assertEqual(pieces[2], (f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n"
                                     "Content-Range: bytes 5-9/10\r\n\r\n").encode())
        self.assertEqual(pieces[4], f"\r\n--{boundary}--\r\n".encode())

    def test_boundary_is_random(self) -> None:
        first = multipart_body([(0, 0), (2, 2)], 3, "text/plain")[0]
        second = multipart_body([(0, 0), (2, 2)], 3, "text/plain")[0]
        self.assertNotEqual(first, second)


DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable


class RangeResponseTest(TempFiles):
    """206, 416 and ignored ranges through serve_file."""

    def setUp(self) -> None:
        super().setUp()
        self.file = self.target("data.bin", DATA)
        self.etag = fields(self.serve(self.file))["etag"]

    def test_single_ranges(self) -> None:
        cases = [
            ("bytes=0-0", 0, 0),
            ("bytes=0-99", 0, 99),
            ("bytes=1000-", 1000, 1023),
            ("bytes=-24", 1000, 1023),
            ("bytes=-5000", 0, 1023),
            ("bytes=1000-5000", 1000, 1023),
            ("bytes=10-19,15-29", 10, 29),
            ("bytes=10-19,20-29", 10, 29),
            ("bytes=2000-,10-19", 10, 19),
        ]
        for value, first, last in cases:
            with self.subTest(value=value):
                response = self.serve(self.file, [("Range", value)])
                self.assertEqual(response.status, 206)
                got = fields(response)
                self.assertEqual(got["content-range"], f"bytes {first}-{last}/1024")
                self.assertEqual(got["content-type"], "application/octet-stream")
                self.assertEqual(got["etag"], self.etag)
                self.assertEqual(got["accept-ranges"], "bytes")
                self.assertEqual(body_bytes(response), DATA[first:last + 1])
                self.assertEqual(response.content_length, last - first + 1)

    def test_multipart(self) -> None:
        response = self.serve(self.file, [("Range", "bytes=500-509, 0-9, -4")])
        self.assertEqual(response.status, 206)
        got = fields(response)
        self.assertNotIn("content-range", got)
        parts = parse_multipart(body_bytes(response), got["content-type"])
        self.assertEqual([part_fields["content-range"] for part_fields, _ in parts],
                         ["bytes 0-9/1024", "bytes 500-509/1024", "bytes 1020-1023/1024"])
        self.assertEqual([data for _, data in parts], [DATA[0:10], DATA[500:510], DATA[1020:]])
        for part_fields, _ in parts:
            self.assertEqual(part_fields["content-type"], "application/octet-stream")
        self.assertEqual(response.content_length, len(body_bytes(response)))

    def test_multipart_parts_carry_charset_of_text(self) -> None:
        text = self.target("notes.txt", b"0123456789" * 10)
        response = self.serve(text, [("Range", "bytes=0-1,5-6")])
        parts = parse_multipart(body_bytes(response), fields(response)["content-type"])
        self.assertEqual(parts[0][0]["content-type"], "text/plain; charset=utf-8")
        self.assertEqual([data for _, data in parts], [b"01", b"56"])

    def test_ignored_ranges_send_the_whole_file(self) -> None:
        for value in ("items=0-1", "bytes=5-4", "bytes=1_0-20", "bytes=0-1, bytes=2-3",
                      "bytes=0-,0-,0-", "bytes=0-9,1-9,2-9,3-9"):
            with self.subTest(value=value):
                response = self.serve(self.file, [("Range", value)])
                self.assertEqual(response.status, 200)
                self.assertNotIn("content-range", fields(response))
                self.assertEqual(body_bytes(response), DATA)

    def test_unsatisfiable(self) -> None:
        for value in ("bytes=1024-", "bytes=-0", "bytes=5000-6000,1024-", "bytes=" + HUGE + "-"):
            for method in ("GET", "HEAD"):
                with self.subTest(value=value, method=method):
                    with self.assertRaises(HTTPError) as caught:
                        self.serve(self.file, [("Range", value)], method)
                    self.assertEqual(caught.exception.status, 416)
                    self.assertIn(("Content-Range", "bytes */1024"), caught.exception.headers)

    def test_empty_file_range_is_416(self) -> None:
        empty = self.target("empty.bin", b"")
        for value in ("bytes=0-", "bytes=-1"):
            with self.subTest(value=value), self.assertRaises(HTTPError) as caught:
                self.serve(empty, [("Range", value)])
            self.assertEqual(caught.exception.status, 416)
            self.assertIn(("Content-Range", "bytes */0"), caught.exception.headers)

    def test_head_gets_the_get_206_headers(self) -> None:
        get = self.serve(self.file, [("Range", "bytes=10-20")])
        head = self.serve(self.file, [("Range", "bytes=10-20")], "HEAD")
        self.assertEqual(head.status, 206)
        self.assertEqual(get.headers, head.headers)
        self.assertEqual(get.content_length, head.content_length)
        get = self.serve(self.file, [("Range", "bytes=1-2,5-6")])
        head = self.serve(self.file, [("Range", "bytes=1-2,5-6")], "HEAD")
        self.assertEqual(head.status, 206)
        self.assertEqual(get.content_length, head.content_length)

    def test_if_range(self) -> None:
        old = self.target("old.bin", DATA, mtime=MTIME)
        old_etag = fields(self.serve(old))["etag"]
        cases = [
            (old_etag, 206),
            ("W/" + old_etag, 200),
            ('"other"', 200),
            (MTIME_DATE, 206),
            (format_http_date(MTIME - 1), 200),
            (format_http_date(MTIME + 1), 200),
            ("Sunday, 13-Sep-20 12:26:40 GMT", 206),
            ("not a validator", 200),
        ]
        for value, status in cases:
            with self.subTest(value=value):
                response = self.serve(old, [("Range", "bytes=0-3"), ("If-Range", value)])
                self.assertEqual(response.status, status)
                expected = DATA[:4] if status == 206 else DATA
                self.assertEqual(body_bytes(response), expected)

    def test_if_range_mismatch_never_gives_416(self) -> None:
        response = self.serve(self.file, [("Range", "bytes=5000-"), ("If-Range", '"old"')])
        self.assertEqual(response.status, 200)

    def test_if_range_without_range_is_ignored(self) -> None:
        response = self.serve(self.file, [("If-Range", '"old"')])
        self.assertEqual(response.status, 200)

    def test_overlapping_ranges_cannot_amplify_the_response(self) -> None:
        # RFC 9110 §17.15: many overlapping ranges would repeat the file many times.
        value = "bytes=" + ",".join(["0-"] * 16)
        response = self.serve(self.file, [("Range", value)])
        self.assertEqual(response.status, 200)
        self.assertEqual(response.content_length, len(DATA))

    def test_many_tiny_ranges_over_the_limit_get_the_whole_file_once(self) -> None:
        value = "bytes=" + ",".join(f"{n * 2}-{n * 2}" for n in range(17))
        response = self.serve(self.file, [("Range", value)])
        self.assertEqual(response.status, 200)
        limited = self.serve(self.file, [("Range", value)], max_ranges=32)
        self.assertEqual(limited.status, 206)
        self.assertEqual(len(parse_multipart(body_bytes(limited),
                                             fields(limited)["content-type"])), 17)

    def test_overlapping_ranges_coalesce_into_one_part(self) -> None:
        value = "bytes=0-600,400-1023,-100"
        response = self.serve(self.file, [("Range", value)])
        self.assertEqual(response.status, 206)
        self.assertEqual(fields(response)["content-range"], "bytes 0-1023/1024")
        self.assertEqual(response.content_length, len(DATA))


if __name__ == "__main__":
    unittest.main()
