"""Message framing for requests and responses alike (nex.http.framing), without sockets."""

from __future__ import annotations

import unittest

from nex.http.errors import HTTPError
from nex.http.framing import (CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, HeadLimits, body_framing,
                              chunk_size_line, connection_options, find_head_end, has_content,
                              outgoing_framing, persists, refuse_bare_cr_lf,
                              split_head)

# name, version, Content-Length values, Transfer-Encoding values, no_body,
# expected (framing, content_length) for a request, and for a response
FRAMING_CASES = [
    ("no fields", "HTTP/1.1", [], [], False, (NO_BODY, None), (UNTIL_CLOSE, None)),
    ("no fields, 1.0", "HTTP/1.0", [], [], False, (NO_BODY, None), (UNTIL_CLOSE, None)),
    ("length", "HTTP/1.1", ["5"], [], False, (LENGTH, 5), (LENGTH, 5)),
    ("zero length", "HTTP/1.1", ["0"], [], False, (LENGTH, 0), (LENGTH, 0)),
    ("18 digits", "HTTP/1.1", ["9" * 18], [], False, (LENGTH, 10 ** 18 - 1),
     (LENGTH, 10 ** 18 - 1)),
    ("leading zeros", "HTTP/1.1", ["007"], [], False, (LENGTH, 7), (LENGTH, 7)),
    ("equal list", "HTTP/1.1", ["7, 7", "7"], [], False, (LENGTH, 7), (LENGTH, 7)),
    ("chunked", "HTTP/1.1", [], ["chunked"], False, (CHUNKED, None), (CHUNKED, None)),
    ("chunked any case", "HTTP/1.1", [], ["Chunked"], False, (CHUNKED, None),
     (CHUNKED, None)),
    ("no body keeps the length", "HTTP/1.1", ["10"], [], True, (NO_BODY, 10), (NO_BODY, 10)),
    ("no body ignores the codings", "HTTP/1.1", [], ["gzip"], True, (NO_BODY, None),
     (NO_BODY, None)),
]

# name, version, Content-Length values, Transfer-Encoding values, no_body, status
REFUSED_CASES = [
    ("both fields", "HTTP/1.1", ["5"], ["chunked"], False, 400),
    ("both fields, no body", "HTTP/1.1", ["5"], ["chunked"], True, 400),
    ("coding in 1.0", "HTTP/1.0", [], ["chunked"], False, 400),
    ("sign", "HTTP/1.1", ["+5"], [], False, 400),
    ("empty length", "HTTP/1.1", [""], [], False, 400),
    ("19 digits", "HTTP/1.1", ["1" * 19], [], False, 400),
    ("non-ASCII digits", "HTTP/1.1", ["\u0665"], [], False, 400),
    ("one non-ASCII digit", "HTTP/1.1", ["1\u00b2"], [], False, 400),
    ("underscore", "HTTP/1.1", ["1_0"], [], False, 400),
    ("space inside", "HTTP/1.1", ["1 0"], [], False, 400),
    ("differing lengths", "HTTP/1.1", ["5", "6"], [], False, 400),
    ("differing list", "HTTP/1.1", ["5, 6"], [], False, 400),
    ("bad length, no body", "HTTP/1.1", ["x"], [], True, 400),
    ("chunked not last", "HTTP/1.1", [], ["chunked, gzip"], False, 400),
    ("chunked twice", "HTTP/1.1", [], ["chunked", "chunked"], False, 400),
    ("only gzip", "HTTP/1.1", [], ["gzip"], False, 400),
    ("empty coding list", "HTTP/1.1", [], [","], False, 400),
    ("malformed coding list", "HTTP/1.1", [], ["chunked;"], False, 400),
    ("gzip then chunked", "HTTP/1.1", [], ["gzip, chunked"], False, 501),
    ("chunked with a parameter", "HTTP/1.1", [], ["chunked;a=b"], False, 501),
]


class BodyFramingTest(unittest.TestCase):
    """RFC 9112 §6.1-6.3 for both directions."""

    def test_framing(self) -> None:
        for name, version, lengths, codings, no_body, request, response in FRAMING_CASES:
            with self.subTest(name):
                self.assertEqual(body_framing(version, lengths, codings, request=True,
                                              no_body=no_body), request)
                self.assertEqual(body_framing(version, lengths, codings, request=False,
                                              no_body=no_body), response)

    def test_refused(self) -> None:
        for name, version, lengths, codings, no_body, status in REFUSED_CASES:
            for request in (True, False):
                with self.subTest(name, request=request), self.assertRaises(HTTPError) as caught:
                    body_framing(version, lengths, codings, request=request, no_body=no_body)
                self.assertEqual((caught.exception.status, caught.exception.close),
                                 (status, True))


# value, options, well formed
CONNECTION_CASES = [
    (None, frozenset(), True),
    ("close", {"close"}, True),
    ("Keep-Alive, X-A", {"keep-alive", "x-a"}, True),
    (" , close ,", {"close"}, True),
    ("close, a b", {"close"}, False),
    ("\"close\"", frozenset(), False),
    ("x" * 600 + ", close", {"x" * 600, "close"}, True),
]

# version, options, persists
PERSIST_CASES = [
    ("HTTP/1.1", set(), True),
    ("HTTP/1.1", {"close"}, False),
    ("HTTP/1.1", {"keep-alive", "close"}, False),
    ("HTTP/1.0", set(), False),
    ("HTTP/1.0", {"keep-alive"}, True),
    ("HTTP/1.0", {"keep-alive", "close"}, False),
    ("HTTP/1.2", set(), True),
]


class ConnectionTest(unittest.TestCase):
    """Connection options and the keep-alive decision (RFC 9112 §9.3)."""

    def test_options(self) -> None:
        for value, options, well_formed in CONNECTION_CASES:
            with self.subTest(value=value):
                self.assertEqual(connection_options(value), (frozenset(options), well_formed))

    def test_persists(self) -> None:
        for version, options, expected in PERSIST_CASES:
            with self.subTest(version=version, options=options):
                self.assertEqual(persists(version, frozenset(options)), expected)


class HeadTest(unittest.TestCase):
    """Where a head ends, and the checks every head passes."""

    LIMITS = HeadLimits(request_line=16, header_block=64, header_count=2)

    def test_find_head_end(self) -> None:
        for buffer, start, end in [(b"A\r\n\r\nrest", 0, 5), (b"A\n\nrest", 0, 3),
                                   (b"A\r\nB: c\r\n\r\n", 4, 11), (b"A\r\nB: c\r\n", 0, -1),
                                   (b"A\r\n\r\nB\n\n", 0, 5), (b"A\n\nB\r\n\r\n", 0, 3),
                                   (b"A\r\n\n", 0, 4), (b"", 0, -1)]:
            with self.subTest(buffer=buffer):
                self.assertEqual(find_head_end(buffer, start), end)

    def test_split(self) -> None:
        for head, parts in [
                (b"GET / HTTP/1.1\r\nA: b\r\nC:\xe9\r\n\r\n",
                 ("GET / HTTP/1.1", "A: b\r\nC:\xe9\r\n")),
                (b"HTTP/1.1 200 OK\r\n\r\n", ("HTTP/1.1 200 OK", "")),
                (b"\r\n\r\n", ("", ""))]:
            with self.subTest(head=head):
                self.assertEqual(split_head(head, self.LIMITS), parts)

    def test_refused(self) -> None:
        for name, head, status in [
                ("long start line", b"GET /abcdefghijkl HTTP/1.1\r\n\r\n", 414),
                ("large head", b"GET / HTTP/1.1\r\n" + b"A: " + b"b" * 60 + b"\r\n\r\n", 431),
                ("too many fields", b"GET / HTTP/1.1\r\nA: b\r\nA: b\r\nA: b\r\n\r\n", 431),
                ("bare LF", b"GET / HTTP/1.1\nA: b\r\n\r\n", 400),
                ("bare LF in a head too short", b"GET / HTTP/1.1\nA: b\r\n", 400),
                ("bare LF, too many fields", b"GET / HTTP/1.1\r\nA: b\nA: b\r\nA: b\r\n\r\n",
                 400),
                ("no blank line", b"GET / HTTP/1.1\r\n", 400)]:
            for request in (True, False):
                with self.subTest(name, request=request), self.assertRaises(HTTPError) as caught:
                    split_head(head, self.LIMITS, request=request)
                self.assertEqual(caught.exception.status, status)

    def test_a_bare_cr_or_lf_is_the_reason_before_any_other(self) -> None:
        # A head too short, and heads with too many fields.
        for head in (b"GET / HTTP/1.1\nA: b\r\n", b"GET / HTTP/1.1\r\nA: b\nA: b\r\nA: b\r\n\r\n",
                     b"GET / HTTP/1.1\r\nA: b\rA: b\r\nA: b\r\nA: b\r\n\r\n"):
            for request, what in ((True, "request"), (False, "response")):
                with self.subTest(head=head, request=request), \
                        self.assertRaises(HTTPError) as caught:
                    split_head(head, self.LIMITS, request=request)
                self.assertEqual(caught.exception.detail, f"bare CR or LF in {what} head")

    def test_a_bare_cr_inside_a_line_is_left_to_the_line_grammars(self) -> None:
        # A start line or field line holding a CR is refused by its grammar, whose caller
        # asks refuse_bare_cr_lf for the reason first.
        self.assertEqual(split_head(b"GET / HTTP/1.1\r\nA: \rb\r\n\r\n", self.LIMITS),
                         ("GET / HTTP/1.1", "A: \rb\r\n"))
        with self.assertRaises(HTTPError) as caught:
            refuse_bare_cr_lf(b"GET / HTTP/1.1\r\nA: \rb\r\n\r\n", request=False)
        self.assertEqual((caught.exception.status, caught.exception.detail),
                         (400, "bare CR or LF in response head"))
        refuse_bare_cr_lf(b"GET / HTTP/1.1\r\n\r\n")

    def test_defaults(self) -> None:
        self.assertEqual(HeadLimits(), HeadLimits(8192, 65536, 100))


class OutgoingTest(unittest.TestCase):
    """How Nex frames what it sends."""

    def test_outgoing_framing(self) -> None:
        for length, status, chunked_allowed, expected in [
                (10, 200, True, LENGTH), (None, 200, True, CHUNKED),
                (None, 200, False, UNTIL_CLOSE), (None, 204, False, NO_BODY),
                (None, 304, True, NO_BODY), (5, 101, True, NO_BODY), (0, 404, False, LENGTH)]:
            with self.subTest(length=length, status=status, chunked=chunked_allowed):
                self.assertEqual(outgoing_framing(length, status, chunked_allowed), expected)

    def test_has_content(self) -> None:
        self.assertEqual([status for status in (100, 101, 200, 204, 206, 304, 404)
                          if has_content(status)], [200, 206, 404])

    def test_chunk_size_line(self) -> None:
        self.assertEqual([chunk_size_line(size) for size in (1, 255, 4096)],
                         [b"1\r\n", b"ff\r\n", b"1000\r\n"])


if __name__ == "__main__":
    unittest.main()
