"""Validators, conditional requests, ranges and content codings against the real server.

Each test talks raw HTTP/1.1 to ``server.py`` (RFC 9110 §8.8 validators, §13 conditional
requests, §14 range requests; §8.4 and §12.5.3 content codings).  Requests go out on a fresh
socket with ``Connection: close`` and the reply is read until the server closes, so the body
is exactly what followed the head and its length can be checked against Content-Length.
"""

from __future__ import annotations

import email.utils
import gzip
import os
import re
import shutil
import tempfile
import unittest
from typing import Dict, List, NamedTuple, Sequence, Tuple

from tests.support import NexServer, ResponseReader, read_all

# RFC 9110 §8.8.3: a strong entity-tag is DQUOTE *etagc DQUOTE, without the W/ prefix.
STRONG_ETAG = re.compile(r'"[\x21\x23-\x7e\x80-\xff]*"')
IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
                         r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                         r"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT")
CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)")
BYTERANGES = re.compile(r"multipart/byteranges; boundary=([0-9A-Za-z'()+_,./:=?-]{1,70})")

#: Seconds since the epoch of a fixed past modification time (Fri, 01 Jan 2021 00:00:00 GMT),
#: far enough back that a Last-Modified date counts as a strong validator.
PAST = 1609459200
PAST_NS = PAST * 1_000_000_000 + 123_456_789
PAST_DATE = "Fri, 01 Jan 2021 00:00:00 GMT"


class Reply(NamedTuple):
    """One response: status, headers by lower-case name, the raw body, and the raw head."""

    status: int
    headers: Dict[str, str]
    body: bytes
    head: bytes


def http_date(seconds: float) -> str:
    """``seconds`` as an IMF-fixdate."""
    return email.utils.formatdate(seconds, usegmt=True)


def write_file(root: str, name: str, data: bytes, mtime_ns: int = PAST_NS) -> str:
    """Create ``root/name`` holding ``data`` with the given modification time; its path."""
    path = os.path.join(root, name)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def patterned(size: int) -> bytes:
    """``size`` bytes where nearby offsets differ, so an off-by-one shows in the body."""
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


def text_lines(count: int) -> bytes:
    """Compressible text of ``count`` numbered lines."""
    return b"".join(b"line %06d: the quick brown fox jumps over the lazy dog\n" % i
                    for i in range(count))


class ServerTestCase(unittest.TestCase):
    """One document root and one server per class; ``files`` maps names to contents."""

    files: Dict[str, bytes] = {}
    settings: Dict[str, Dict[str, object]] = {}

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="nex-root-")
        for name, data in cls.files.items():
            write_file(cls.root, name, data)
        cls.server = NexServer(cls.root, settings=cls.settings).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def fetch(self, path: str, headers: Sequence[Tuple[str, str]] = (),
              method: str = "GET") -> Reply:
        """Send one request on a fresh connection and read the reply until the server closes.

        Checks the framing on the way: no header twice, no body for HEAD and 304, and
        otherwise a Content-Length equal to the number of body bytes.
        """
        lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers]
        with self.server.connect() as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            data = read_all(sock)
        head, separator, body = data.partition(b"\r\n\r\n")
        self.assertEqual(separator, b"\r\n\r\n", data[:200])
        status_line, *fields = head.decode("latin-1").split("\r\n")
        self.assertRegex(status_line, r"HTTP/1\.1 [0-9]{3} ")
        status = int(status_line.split(" ")[1])
        parsed: Dict[str, str] = {}
        for field in fields:
            name, _, value = field.partition(":")
            self.assertNotIn(name.lower(), parsed, f"{name} sent twice")
            parsed[name.lower()] = value.strip(" \t")
        if method == "HEAD" or status == 304:
            self.assertEqual(body, b"", f"{method} {path} -> {status} carried a body")
        else:
            self.assertEqual(parsed.get("content-length"), str(len(body)), head)
        if status == 304:
            self.assertNotIn("content-length", parsed)
        return Reply(status, parsed, body, head)

    def get(self, path: str, **headers: str) -> Reply:
        """GET with headers given as keyword arguments (``If_None_Match`` → If-None-Match)."""
        return self.fetch(path, [(name.replace("_", "-"), value)
                                 for name, value in headers.items()])

    def assertFileResponse(self, reply: Reply, cache_control: str = "no-cache") -> None:
        """The validators and policy fields every file response carries (200, 206, 304)."""
        self.assertRegex(reply.headers.get("last-modified", ""), IMF_FIXDATE)
        self.assertRegex(reply.headers.get("etag", ""), STRONG_ETAG)
        self.assertEqual(reply.headers.get("cache-control"), cache_control)
        if reply.status != 304:
            self.assertEqual(reply.headers.get("accept-ranges"), "bytes")

    def assertPart(self, reply: Reply, data: bytes, first: int, last: int) -> None:
        """A single-range 206 of bytes ``first``..``last`` of ``data``."""
        self.assertEqual(reply.status, 206, reply.head)
        self.assertEqual(reply.headers["content-range"], f"bytes {first}-{last}/{len(data)}")
        self.assertEqual(reply.body, data[first:last + 1])

    def parse_byteranges(self, reply: Reply) -> List[Tuple[str, str, bytes]]:
        """The parts of a multipart/byteranges body as ``(Content-Type, Content-Range, data)``.

        The body must be exactly: ``--B CRLF`` then, per part, header lines, a blank line
        and as many bytes as the part's Content-Range says, each part followed by
        ``CRLF --B``, and ``--`` plus CRLF after the last one.
        """
        match = BYTERANGES.fullmatch(reply.headers["content-type"])
        self.assertIsNotNone(match, reply.headers["content-type"])
        delimiter = b"--" + match.group(1).encode("ascii")
        body = reply.body
        self.assertTrue(body.startswith(delimiter + b"\r\n"), body[:100])
        position = len(delimiter) + 2
        parts = []
        while True:
            end = body.index(b"\r\n\r\n", position)
            fields = dict(line.split(": ", 1)
                          for line in body[position:end].decode("latin-1").split("\r\n"))
            self.assertEqual(set(fields), {"Content-Type", "Content-Range"})
            range_match = CONTENT_RANGE.fullmatch(fields["Content-Range"])
            self.assertIsNotNone(range_match, fields["Content-Range"])
            length = int(range_match.group(2)) - int(range_match.group(1)) + 1
            start = end + 4
            parts.append((fields["Content-Type"], fields["Content-Range"],
                          body[start:start + length]))
            position = start + length
            self.assertEqual(body[position:position + 2 + len(delimiter)], b"\r\n" + delimiter)
            position += 2 + len(delimiter)
            if body[position:position + 2] == b"--":
                self.assertEqual(body[position:], b"--\r\n")
                return parts
            self.assertEqual(body[position:position + 2], b"\r\n")
            position += 2


class ValidatorTest(ServerTestCase):
    """Last-Modified, ETag, Accept-Ranges and Cache-Control on every file (RFC 9110 §8.8)."""

    files = {"page.html": b"<!doctype html><title>x</title>\n", "data.bin": patterned(5000),
             "style.css": b"body { color: #123; }\n", "empty.txt": b""}

    def test_every_file_response_carries_validators_and_cache_policy(self):
        for name in self.files:
            for method in ("GET", "HEAD"):
                with self.subTest(name=name, method=method):
                    reply = self.fetch("/" + name, method=method)
                    self.assertEqual(reply.status, 200)
                    self.assertFileResponse(reply)
                    self.assertEqual(reply.headers["last-modified"], PAST_DATE)
                    self.assertEqual(reply.headers["content-length"], str(len(self.files[name])))
        ranged = self.get("/data.bin", Range="bytes=0-0")
        self.assertEqual(ranged.status, 206)
        self.assertFileResponse(ranged)

    def test_etag_is_the_same_on_every_request_and_differs_between_files(self):
        tags = {name: self.get("/" + name).headers["etag"] for name in self.files}
        self.assertEqual(tags, {name: self.get("/" + name).headers["etag"]
                                for name in self.files})
        self.assertEqual(len(set(tags.values())), len(tags), tags)

    def test_etag_changes_when_the_file_is_rewritten_with_another_size(self):
        write_file(self.root, "rewritten.txt", b"first version\n")
        before = self.get("/rewritten.txt")
        write_file(self.root, "rewritten.txt", b"second, longer version\n")
        after = self.get("/rewritten.txt")
        self.assertEqual(after.body, b"second, longer version\n")
        self.assertNotEqual(before.headers["etag"], after.headers["etag"])
        self.assertEqual(self.get("/rewritten.txt", If_None_Match=before.headers["etag"]).status,
                         200)

    def test_file_rewritten_with_the_same_size_and_mtime_is_served_fresh(self):
        write_file(self.root, "same-size.txt", b"version one\n")
        self.assertEqual(self.get("/same-size.txt").body, b"version one\n")
        write_file(self.root, "same-size.txt", b"version two\n")
        self.assertEqual(self.get("/same-size.txt").body, b"version two\n")
        self.assertEqual(self.get("/same-size.txt", Range="bytes=8-10").body, b"two")

    def test_etag_and_last_modified_follow_the_modification_time(self):
        path = write_file(self.root, "touched.txt", b"same bytes\n")
        before = self.get("/touched.txt")
        later = PAST_NS + 86400 * 1_000_000_000
        os.utime(path, ns=(later, later))
        after = self.get("/touched.txt")
        self.assertNotEqual(before.headers["etag"], after.headers["etag"])
        self.assertEqual(after.headers["last-modified"], http_date(later // 1_000_000_000))
        self.assertEqual(self.get("/touched.txt", If_None_Match=before.headers["etag"]).status,
                         200)

    def test_etag_changes_when_the_mtime_moves_within_the_same_second(self):
        path = write_file(self.root, "nanos.txt", b"same bytes\n", mtime_ns=PAST_NS)
        before = self.get("/nanos.txt").headers
        os.utime(path, ns=(PAST_NS + 1000, PAST_NS + 1000))
        after = self.get("/nanos.txt").headers
        self.assertEqual(before["last-modified"], after["last-modified"])
        self.assertNotEqual(before["etag"], after["etag"])

    def test_future_modification_time_is_sent_as_the_present(self):
        future = (2 ** 32) * 1_000_000_000
        write_file(self.root, "future.txt", b"from the future\n", mtime_ns=future)
        reply = self.get("/future.txt")
        sent = email.utils.parsedate_to_datetime(reply.headers["last-modified"]).timestamp()
        date = email.utils.parsedate_to_datetime(reply.headers["date"]).timestamp()
        self.assertLessEqual(sent, date)


class CachePolicyTest(ServerTestCase):
    """``[caching] max_age`` gives listed extensions ``max-age``; the rest keep ``no-cache``."""

    files = {"site.css": b"a { color: red; }\n", "notes.txt": b"notes\n"}
    settings = {"caching": {"max_age": ".css=3600"}}

    def test_css_gets_max_age(self):
        for method in ("GET", "HEAD"):
            reply = self.fetch("/site.css", method=method)
            self.assertEqual(reply.status, 200)
            self.assertFileResponse(reply, cache_control="max-age=3600")
        self.assertEqual(self.get("/site.css").headers["content-type"], "text/css; charset=utf-8")

    def test_other_extensions_keep_the_default(self):
        self.assertFileResponse(self.get("/notes.txt"), cache_control="no-cache")

    def test_not_modified_repeats_the_cache_policy(self):
        etag = self.get("/site.css").headers["etag"]
        reply = self.get("/site.css", If_None_Match=etag)
        self.assertEqual(reply.status, 304)
        self.assertFileResponse(reply, cache_control="max-age=3600")


class ConditionalRequestTest(ServerTestCase):
    """If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since (RFC 9110 §13)."""

    DATA = b"conditional requests\n" * 20
    files = {"doc.txt": DATA}

    def setUp(self):
        self.etag = self.get("/doc.txt").headers["etag"]

    def assertNotModified(self, reply: Reply) -> None:
        self.assertEqual(reply.status, 304, reply.head)
        self.assertEqual(reply.headers["etag"], self.etag)
        self.assertFileResponse(reply)

    def test_if_match_with_another_tag_fails_with_412(self):
        for value in ('"other"', '"other", "another"', self.etag[:-1] + 'x"'):
            with self.subTest(value=value):
                reply = self.get("/doc.txt", If_Match=value)
                self.assertEqual(reply.status, 412)
                self.assertNotIn(self.DATA, reply.body)

    def test_if_match_uses_the_strong_comparison(self):
        self.assertEqual(self.get("/doc.txt", If_Match="W/" + self.etag).status, 412)

    def test_if_match_with_the_current_tag_or_star_succeeds(self):
        for value in ("*", self.etag, f'"other", {self.etag}'):
            with self.subTest(value=value):
                reply = self.get("/doc.txt", If_Match=value)
                self.assertEqual(reply.status, 200)
                self.assertEqual(reply.body, self.DATA)

    def test_if_unmodified_since_in_the_past_fails_with_412(self):
        reply = self.get("/doc.txt", If_Unmodified_Since=http_date(PAST - 86400))
        self.assertEqual(reply.status, 412)

    def test_if_unmodified_since_at_or_after_last_modified_succeeds(self):
        for value in (PAST_DATE, http_date(PAST + 86400)):
            with self.subTest(value=value):
                self.assertEqual(self.get("/doc.txt", If_Unmodified_Since=value).status, 200)

    def test_if_match_wins_over_if_unmodified_since(self):
        reply = self.get("/doc.txt", If_Match=self.etag,
                         If_Unmodified_Since=http_date(PAST - 86400))
        self.assertEqual(reply.status, 200)

    def test_if_none_match_with_a_matching_tag_is_not_modified(self):
        for value in (self.etag, "W/" + self.etag, f'"a", {self.etag}, "b"',
                      f'W/"a",W/{self.etag}', "*"):
            with self.subTest(value=value):
                self.assertNotModified(self.get("/doc.txt", If_None_Match=value))

    def test_if_none_match_without_a_matching_tag_sends_the_file(self):
        for value in ('"a"', '"a", "b"', self.etag[1:-1]):
            with self.subTest(value=value):
                reply = self.get("/doc.txt", If_None_Match=value)
                self.assertEqual(reply.status, 200)
                self.assertEqual(reply.body, self.DATA)

    def test_if_modified_since_at_or_after_last_modified_is_not_modified(self):
        for value in (PAST_DATE, http_date(PAST + 3600)):
            with self.subTest(value=value):
                self.assertNotModified(self.get("/doc.txt", If_Modified_Since=value))

    def test_if_modified_since_accepts_the_obsolete_date_forms(self):
        for value in ("Friday, 01-Jan-21 00:00:00 GMT", "Fri Jan  1 00:00:00 2021"):
            with self.subTest(value=value):
                self.assertNotModified(self.get("/doc.txt", If_Modified_Since=value))

    def test_if_modified_since_before_last_modified_sends_the_file(self):
        reply = self.get("/doc.txt", If_Modified_Since=http_date(PAST - 1))
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body, self.DATA)

    def test_if_none_match_wins_over_if_modified_since(self):
        reply = self.get("/doc.txt", If_None_Match='"stale"', If_Modified_Since=PAST_DATE)
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body, self.DATA)

    def test_malformed_dates_are_ignored(self):
        for value in ("yesterday", "Fri, 01 Jan 2021 00:00:00 gmt", "Fri, 32 Jan 2021 00:00:00 GMT",
                      "Fri, 01 Jan 2021 25:00:00 GMT", "Fri,  01 Jan 2021 00:00:00 GMT",
                      "1609459200", "Fri, 01 Jan 2021 00:00:00 GMT, extra", ""):
            for field in ("If-Modified-Since", "If-Unmodified-Since"):
                with self.subTest(field=field, value=value):
                    reply = self.fetch("/doc.txt", [(field, value)])
                    self.assertEqual(reply.status, 200)
                    self.assertEqual(reply.body, self.DATA)

    def test_head_with_if_none_match_is_not_modified(self):
        reply = self.fetch("/doc.txt", [("If-None-Match", self.etag)], method="HEAD")
        self.assertNotModified(reply)

    def test_not_modified_beats_range(self):
        self.assertNotModified(self.get("/doc.txt", If_None_Match=self.etag, Range="bytes=0-3"))

    def test_not_modified_leaves_no_bytes_on_a_keep_alive_connection(self):
        request = (f"GET /doc.txt HTTP/1.1\r\nHost: localhost\r\n"
                   f"If-None-Match: {self.etag}\r\n\r\n").encode("latin-1")
        with self.server.connect() as sock:
            reader = ResponseReader(sock)
            sock.sendall(request + b"GET /doc.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
                         + request)
            self.assertEqual(reader.read()[0], 304)
            status, headers, body = reader.read()
            self.assertEqual((status, body), (200, self.DATA))
            self.assertEqual(reader.read()[0], 304)
            sock.sendall(b"GET /doc.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            self.assertEqual(reader.read()[2], self.DATA)
            self.assertEqual(reader.buffer + read_all(sock), b"")


class RangeTest(ServerTestCase):
    """Range requests (RFC 9110 §14): single, suffix, open-ended, multipart, If-Range."""

    DATA = patterned(10000)
    BIG = os.urandom(5 * 1024 * 1024 + 321)
    TEXT = text_lines(100)
    files = {"data.bin": DATA, "big.bin": BIG, "text.txt": TEXT}

    def test_first_ten_bytes(self):
        reply = self.get("/data.bin", Range="bytes=0-9")
        self.assertPart(reply, self.DATA, 0, 9)
        self.assertEqual(reply.headers["content-length"], "10")
        self.assertEqual(reply.headers["content-type"], "application/octet-stream")
        self.assertFileResponse(reply)

    def test_suffix_range(self):
        self.assertPart(self.get("/data.bin", Range="bytes=-5"), self.DATA, 9995, 9999)

    def test_open_ended_range(self):
        self.assertPart(self.get("/data.bin", Range="bytes=5-"), self.DATA, 5, 9999)

    def test_range_end_is_clipped_to_the_file(self):
        self.assertPart(self.get("/data.bin", Range="bytes=9990-20000"), self.DATA, 9990, 9999)
        self.assertPart(self.get("/data.bin", Range="bytes=-20000"), self.DATA, 0, 9999)
        self.assertPart(self.get("/data.bin", Range="bytes=0-99999999999999999999999"),
                        self.DATA, 0, 9999)

    def test_unit_is_case_insensitive_and_whitespace_around_commas_is_allowed(self):
        self.assertPart(self.get("/data.bin", Range="Bytes=100-199"), self.DATA, 100, 199)
        self.assertPart(self.get("/data.bin", Range="bytes=100-149 , 150-199"),
                        self.DATA, 100, 199)

    def test_several_ranges_give_multipart_byteranges(self):
        reply = self.get("/text.txt", Range="bytes=0-9,200-299,-7")
        self.assertEqual(reply.status, 206)
        self.assertNotIn("content-range", reply.headers)
        self.assertFileResponse(reply)
        size = len(self.TEXT)
        self.assertEqual(self.parse_byteranges(reply), [
            ("text/plain; charset=utf-8", f"bytes 0-9/{size}", self.TEXT[0:10]),
            ("text/plain; charset=utf-8", f"bytes 200-299/{size}", self.TEXT[200:300]),
            ("text/plain; charset=utf-8", f"bytes {size - 7}-{size - 1}/{size}",
             self.TEXT[-7:]),
        ])

    def test_multipart_boundary_differs_between_responses(self):
        types = {self.get("/data.bin", Range="bytes=0-0,2-2").headers["content-type"]
                 for _ in range(3)}
        self.assertEqual(len(types), 3)

    def test_multipart_head_has_the_get_length_and_no_body(self):
        reply = self.fetch("/data.bin", [("Range", "bytes=0-0,2-2")], method="HEAD")
        self.assertEqual(reply.status, 206)
        self.assertRegex(reply.headers["content-type"], BYTERANGES)
        self.assertGreater(int(reply.headers["content-length"]), 2)

    def test_overlapping_and_adjacent_ranges_are_coalesced(self):
        self.assertPart(self.get("/data.bin", Range="bytes=0-9,5-14"), self.DATA, 0, 14)
        self.assertPart(self.get("/data.bin", Range="bytes=10-19,0-9"), self.DATA, 0, 19)
        reply = self.get("/data.bin", Range="bytes=50-59,0-9,5-14")
        self.assertEqual([part[1:] for part in self.parse_byteranges(reply)],
                         [("bytes 0-14/10000", self.DATA[0:15]),
                          ("bytes 50-59/10000", self.DATA[50:60])])

    def test_unsatisfiable_range_is_416_with_the_size(self):
        for value in ("bytes=10000-", "bytes=20000-20010", "bytes=-0", "bytes=10000-10000,-0"):
            with self.subTest(value=value):
                reply = self.get("/data.bin", Range=value)
                self.assertEqual(reply.status, 416)
                self.assertEqual(reply.headers["content-range"], "bytes */10000")
                self.assertNotIn(self.DATA[:100], reply.body)

    def test_satisfiable_ranges_among_unsatisfiable_ones_are_served(self):
        self.assertPart(self.get("/data.bin", Range="bytes=20000-,3-4"), self.DATA, 3, 4)

    def test_malformed_or_foreign_range_is_ignored(self):
        for value in ("items=0-1", "bytes=5-2", "bytes=abc", "bytes 0-1", "bytes=", "bytes=-",
                      "bytes=+1-2", "bytes=1_0-20", "bytes=0x10-20", "bytes=1-2-3",
                      "bytes=0-1;x", "bytes=--1", "bytes=\u00b2-3"):
            with self.subTest(value=value):
                reply = self.get("/data.bin", Range=value)
                self.assertEqual(reply.status, 200)
                self.assertEqual(reply.body, self.DATA)
                self.assertNotIn("content-range", reply.headers)

    def test_range_with_too_many_or_overlapping_parts_cannot_amplify(self):
        size = len(self.DATA)
        hostile = {
            "more than max_ranges": "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 34, 2)),
            "hundreds of ranges": "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 600, 2)),
            "the whole file repeatedly": "bytes=" + ",".join(["0-"] * 16),
            "overlapping suffixes": "bytes=" + ",".join(["-9999"] * 10),
            "many overlaps of one range": "bytes=" + ",".join(f"{i}-9999" for i in range(16)),
        }
        for label, value in hostile.items():
            with self.subTest(label):
                reply = self.get("/data.bin", Range=value)
                self.assertIn(reply.status, (200, 416))
                self.assertLessEqual(len(reply.body), size)
                if reply.status == 200:
                    self.assertEqual(reply.body, self.DATA)

    def test_max_ranges_parts_are_still_served(self):
        value = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 32, 2))
        parts = self.parse_byteranges(self.get("/data.bin", Range=value))
        self.assertEqual([data for _, _, data in parts],
                         [self.DATA[i:i + 1] for i in range(0, 32, 2)])

    def test_if_range_with_the_current_etag_sends_the_range(self):
        etag = self.get("/data.bin").headers["etag"]
        self.assertPart(self.get("/data.bin", Range="bytes=0-9", If_Range=etag), self.DATA, 0, 9)

    def test_if_range_with_an_old_or_weak_etag_sends_the_whole_file(self):
        etag = self.get("/data.bin").headers["etag"]
        for value in ('"old"', "W/" + etag, etag[:-1]):
            with self.subTest(value=value):
                reply = self.get("/data.bin", Range="bytes=0-9", If_Range=value)
                self.assertEqual(reply.status, 200)
                self.assertEqual(reply.body, self.DATA)

    def test_if_range_with_the_last_modified_date_sends_the_range(self):
        self.assertPart(self.get("/data.bin", Range="bytes=0-9", If_Range=PAST_DATE),
                        self.DATA, 0, 9)

    def test_if_range_with_another_date_sends_the_whole_file(self):
        for value in (http_date(PAST + 1), http_date(PAST - 1), "not a date"):
            with self.subTest(value=value):
                reply = self.get("/data.bin", Range="bytes=0-9", If_Range=value)
                self.assertEqual(reply.status, 200)
                self.assertEqual(reply.body, self.DATA)

    def test_range_on_head_has_the_headers_and_no_body(self):
        reply = self.fetch("/data.bin", [("Range", "bytes=10-19")], method="HEAD")
        self.assertEqual(reply.status, 206)
        self.assertEqual(reply.headers["content-range"], "bytes 10-19/10000")
        self.assertEqual(reply.headers["content-length"], "10")

    def test_range_from_the_middle_of_a_large_file_is_byte_exact(self):
        size = len(self.BIG)
        first, last = 2 * 1024 * 1024 + 7, 4 * 1024 * 1024 + 12
        self.assertPart(self.get("/big.bin", Range=f"bytes={first}-{last}"),
                        self.BIG, first, last)
        self.assertPart(self.get("/big.bin", Range=f"bytes={size - 4097}-"),
                        self.BIG, size - 4097, size - 1)

    def test_large_multipart_is_byte_exact(self):
        reply = self.get("/big.bin", Range="bytes=1000000-1999999,3000000-3000010")
        size = len(self.BIG)
        self.assertEqual([part[1:] for part in self.parse_byteranges(reply)], [
            (f"bytes 1000000-1999999/{size}", self.BIG[1000000:2000000]),
            (f"bytes 3000000-3000010/{size}", self.BIG[3000000:3000011]),
        ])

    def test_ranges_over_one_keep_alive_connection(self):
        with self.server.connect() as sock:
            reader = ResponseReader(sock)
            for first in (0, 4096, 9000):
                sock.sendall(f"GET /data.bin HTTP/1.1\r\nHost: a\r\n"
                             f"Range: bytes={first}-{first + 99}\r\n\r\n".encode("ascii"))
                status, headers, body = reader.read()
                self.assertEqual((status, body), (206, self.DATA[first:first + 100]))
                self.assertEqual(headers["content-length"], "100")


class PrecompressedTest(ServerTestCase):
    """``.br`` and ``.gz`` sidecars chosen by Accept-Encoding (RFC 9110 §12.5.3)."""

    CSS = b"".join(b".rule-%d { margin: %dpx; }\n" % (i, i) for i in range(200))
    GZ = gzip.compress(CSS, mtime=0)
    # The server sends a sidecar's bytes as they are and never decodes them, so a stand-in
    # is enough where the standard library has no Brotli encoder.
    BR = b"\x1b stand-in for a Brotli stream of f.css \x03"
    ONLY_GZ = b"console.log('only a gzip sidecar');\n" * 40
    files = {"f.css": CSS, "f.css.gz": GZ, "f.css.br": BR, "app.js": ONLY_GZ,
             "app.js.gz": gzip.compress(ONLY_GZ, mtime=0), "plain.css": CSS}

    def test_gzip_sidecar(self):
        identity = self.get("/f.css")
        reply = self.get("/f.css", Accept_Encoding="gzip")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.headers["content-encoding"], "gzip")
        self.assertEqual(reply.body, self.GZ)
        self.assertEqual(gzip.decompress(reply.body), self.CSS)
        self.assertEqual(reply.headers["content-type"], "text/css; charset=utf-8")
        self.assertEqual(reply.headers["vary"], "Accept-Encoding")
        self.assertFileResponse(reply)
        self.assertNotEqual(reply.headers["etag"], identity.headers["etag"])

    def test_no_accept_encoding_gets_the_file_with_vary(self):
        reply = self.get("/f.css")
        self.assertEqual(reply.body, self.CSS)
        self.assertNotIn("content-encoding", reply.headers)
        self.assertEqual(reply.headers["vary"], "Accept-Encoding")

    def test_refused_coding_gets_identity(self):
        for value in ("gzip;q=0", "gzip;q=0, br;q=0", "identity", "*;q=0, identity",
                      "gzip;q=0.5, identity;q=0.9, br;q=0"):
            with self.subTest(value=value):
                reply = self.get("/f.css", Accept_Encoding=value)
                self.assertEqual(reply.status, 200)
                self.assertNotIn("content-encoding", reply.headers)
                self.assertEqual(reply.body, self.CSS)
                self.assertEqual(reply.headers["vary"], "Accept-Encoding")

    def test_brotli_is_preferred_when_both_are_accepted(self):
        for value in ("gzip, br", "br, gzip", "gzip, deflate, br, zstd", "*"):
            with self.subTest(value=value):
                reply = self.get("/f.css", Accept_Encoding=value)
                self.assertEqual(reply.headers.get("content-encoding"), "br")
                self.assertEqual(reply.body, self.BR)
                self.assertEqual(reply.headers["content-type"], "text/css; charset=utf-8")

    def test_weights_choose_between_codings(self):
        reply = self.get("/f.css", Accept_Encoding="br;q=0.5, gzip;q=0.8")
        self.assertEqual((reply.headers.get("content-encoding"), reply.body), ("gzip", self.GZ))
        reply = self.get("/f.css", Accept_Encoding="br;q=0, gzip")
        self.assertEqual((reply.headers.get("content-encoding"), reply.body), ("gzip", self.GZ))

    def test_each_coding_has_its_own_etag(self):
        tags = {value: self.get("/f.css", Accept_Encoding=value).headers["etag"]
                for value in ("identity", "gzip", "br")}
        self.assertEqual(len(set(tags.values())), 3, tags)
        for tag in tags.values():
            self.assertRegex(tag, STRONG_ETAG)

    def test_only_existing_sidecars_are_used(self):
        reply = self.get("/app.js", Accept_Encoding="br, gzip")
        self.assertEqual(reply.headers.get("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(reply.body), self.ONLY_GZ)
        self.assertEqual(reply.headers["content-type"], "text/javascript; charset=utf-8")
        reply = self.get("/app.js", Accept_Encoding="br")
        self.assertNotIn("content-encoding", reply.headers)
        self.assertEqual(reply.body, self.ONLY_GZ)

    def test_not_modified_carries_vary_and_the_coded_etag(self):
        gz_tag = self.get("/f.css", Accept_Encoding="gzip").headers["etag"]
        reply = self.get("/f.css", Accept_Encoding="gzip", If_None_Match=gz_tag)
        self.assertEqual(reply.status, 304)
        self.assertEqual(reply.headers["etag"], gz_tag)
        self.assertEqual(reply.headers["vary"], "Accept-Encoding")
        identity_tag = self.get("/f.css").headers["etag"]
        reply = self.get("/f.css", If_None_Match=identity_tag)
        self.assertEqual(reply.status, 304)
        self.assertEqual(reply.headers["vary"], "Accept-Encoding")

    def test_identity_etag_does_not_validate_the_gzip_variant(self):
        identity_tag = self.get("/f.css").headers["etag"]
        reply = self.get("/f.css", Accept_Encoding="gzip", If_None_Match=identity_tag)
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body, self.GZ)

    def test_range_of_a_sidecar_is_a_range_of_its_coded_bytes(self):
        reply = self.get("/f.css", Accept_Encoding="gzip", Range="bytes=0-9")
        self.assertPart(reply, self.GZ, 0, 9)
        self.assertEqual(reply.headers["content-encoding"], "gzip")
        self.assertEqual(reply.headers["vary"], "Accept-Encoding")

    def test_sidecar_requested_by_name_is_a_plain_gzip_file(self):
        reply = self.get("/f.css.gz", Accept_Encoding="gzip")
        self.assertEqual(reply.body, self.GZ)
        self.assertEqual(reply.headers["content-type"], "application/gzip")
        self.assertNotIn("content-encoding", reply.headers)

    def test_head_matches_get_for_the_coded_variant(self):
        get = self.fetch("/f.css", [("Accept-Encoding", "gzip")])
        head = self.fetch("/f.css", [("Accept-Encoding", "gzip")], method="HEAD")
        for reply in (get, head):
            reply.headers.pop("date")
        self.assertEqual((get.status, get.headers), (head.status, head.headers))


class GzipOnTheFlyTest(ServerTestCase):
    """``[compression] gzip`` compresses text types above ``gzip_min_size`` when asked."""

    TEXT = text_lines(5000)
    files = {"large.txt": TEXT, "small.txt": b"tiny\n", "data.bin": patterned(4096)}
    settings = {"compression": {"gzip": "yes", "gzip_min_size": "100"}}

    def test_large_text_is_gzipped(self):
        reply = self.get("/large.txt", Accept_Encoding="gzip")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.headers["content-encoding"], "gzip")
        self.assertEqual(reply.headers["vary"], "Accept-Encoding")
        self.assertEqual(reply.headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(gzip.decompress(reply.body), self.TEXT)
        self.assertLess(len(reply.body), len(self.TEXT) // 4)
        self.assertFileResponse(reply)

    def test_gzipped_etag_differs_and_validates(self):
        identity = self.get("/large.txt")
        gzipped = self.get("/large.txt", Accept_Encoding="gzip")
        self.assertNotIn("content-encoding", identity.headers)
        self.assertEqual(identity.body, self.TEXT)
        self.assertNotEqual(identity.headers["etag"], gzipped.headers["etag"])
        reply = self.get("/large.txt", Accept_Encoding="gzip",
                         If_None_Match=gzipped.headers["etag"])
        self.assertEqual(reply.status, 304)
        self.assertEqual(reply.headers["vary"], "Accept-Encoding")

    def test_head_has_the_gzipped_length(self):
        get = self.get("/large.txt", Accept_Encoding="gzip")
        head = self.fetch("/large.txt", [("Accept-Encoding", "gzip")], method="HEAD")
        self.assertEqual(head.headers["content-length"], str(len(get.body)))
        self.assertEqual(head.headers["content-encoding"], "gzip")

    def test_range_request_gets_identity_206(self):
        reply = self.get("/large.txt", Accept_Encoding="gzip", Range="bytes=100-199")
        self.assertPart(reply, self.TEXT, 100, 199)
        self.assertNotIn("content-encoding", reply.headers)
        self.assertEqual(reply.headers["vary"], "Accept-Encoding")

    def test_small_or_binary_files_are_not_compressed(self):
        for name in ("small.txt", "data.bin"):
            with self.subTest(name=name):
                reply = self.get("/" + name, Accept_Encoding="gzip")
                self.assertNotIn("content-encoding", reply.headers)
                self.assertEqual(reply.body, self.files[name])

    def test_refused_gzip_gets_identity(self):
        reply = self.get("/large.txt", Accept_Encoding="gzip;q=0")
        self.assertNotIn("content-encoding", reply.headers)
        self.assertEqual(reply.body, self.TEXT)


if __name__ == "__main__":
    unittest.main()
