"""The receiver: fixed-length and chunked bodies read and discarded, in pieces of any size."""

from __future__ import annotations

import random
import unittest
from typing import List, Union

from nex.http.body import ChunkedBody, FixedLengthBody
from nex.http.errors import HTTPError
from nex.http.framing import HeadLimits

LIMITS = HeadLimits(request_line=32, header_block=64, header_count=3)
NEXT = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"

Decoder = Union[FixedLengthBody, ChunkedBody]


def feed_pieces(decoder: Decoder, stream: bytes, pieces: List[int]) -> int:
    """Feed ``stream`` cut at ``pieces`` as a connection would; returns bytes consumed.

    Unconsumed bytes are kept and fed again with the next piece, as a buffer would be.
    """
    consumed, buffered, offset = 0, b"", 0
    for size in pieces + [len(stream)]:
        buffered += stream[offset:offset + size]
        offset += size
        taken = decoder.feed(memoryview(buffered))
        consumed += taken
        buffered = buffered[taken:]
        if decoder.done:
            break
    return consumed


def splits(stream: bytes) -> List[List[int]]:
    """Ways to cut ``stream``: whole, byte by byte, and a few random cuts."""
    rng = random.Random(len(stream))
    cuts = [[], [1] * len(stream)]
    for _ in range(5):
        cuts.append([rng.randint(0, 7) for _ in range(len(stream))])
    return cuts


class FixedLengthBodyTest(unittest.TestCase):
    """FixedLengthBody counts exactly Content-Length bytes."""

    def test_whole_and_split(self) -> None:
        for length in (0, 1, 5, 100):
            stream = b"x" * length + NEXT
            for pieces in splits(stream):
                with self.subTest(length=length, pieces=pieces[:8]):
                    body = FixedLengthBody(length)
                    self.assertEqual(feed_pieces(body, stream, pieces), length)
                    self.assertTrue(body.done)
                    self.assertEqual(body.received, length)

    def test_empty_body_is_done_at_once(self) -> None:
        body = FixedLengthBody(0)
        self.assertTrue(body.done)
        self.assertEqual(body.feed(NEXT), 0)

    def test_not_done_until_the_last_byte(self) -> None:
        body = FixedLengthBody(3)
        self.assertEqual(body.feed(b"ab"), 2)
        self.assertFalse(body.done)
        self.assertEqual(body.feed(bytearray(b"cd")), 1)
        self.assertTrue(body.done)
        self.assertEqual(body.feed(b"e"), 0)


# name, body, data bytes it carries
CHUNKED = [
    ("last chunk only", b"0\r\n\r\n", 0),
    ("one chunk", b"5\r\nhello\r\n0\r\n\r\n", 5),
    ("several chunks", b"3\r\nabc\r\n1\r\nd\r\nA\r\n0123456789\r\n0\r\n\r\n", 14),
    ("upper and lower hex", b"a\r\n0123456789\r\nB\r\n0123456789a\r\n0\r\n\r\n", 21),
    ("leading zeros up to 16 digits", b"0000000000000002\r\nab\r\n0000\r\n\r\n", 2),
    ("data holding CRLF and chunk-like bytes", b"7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n", 7),
    ("chunk extensions", b"2;name\r\nab\r\n2 ; a=b;c=\"d;\\\"e\"\r\ncd\r\n0;last\r\n\r\n", 4),
    ("extension with whitespace around =", b"1;a = b\r\nx\r\n0\r\n\r\n", 1),
    ("trailer fields", b"1\r\nx\r\n0\r\nX-Sum: 1\r\nExpires:  never \r\n\r\n", 1),
    ("trailer at the field limit", b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 0),
]

# name, body (each one followed by NEXT); every one is refused with 400
CHUNKED_BAD = [
    ("no size", b"\r\n"),
    ("size with sign", b"+5\r\nhello\r\n0\r\n\r\n"),
    ("size with 0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("size not hex", b"g\r\n"),
    ("size with leading space", b" 5\r\nhello\r\n0\r\n\r\n"),
    ("size with trailing space", b"5 \r\nhello\r\n0\r\n\r\n"),
    ("size with underscore", b"1_0\r\n"),
    ("17 hex digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("bare LF after size", b"5\nhello\r\n0\r\n\r\n"),
    ("bare CR after size", b"5\rhello\r\n0\r\n\r\n"),
    ("data longer than size", b"3\r\nhello\r\n0\r\n\r\n"),
    ("data shorter than size", b"6\r\nhello\r\n0\r\n\r\n"),
    ("bare LF after data", b"5\r\nhello\n0\r\n\r\n"),
    ("missing CRLF after data", b"5\r\nhello0\r\n\r\n"),
    ("extension without name", b"5;\r\nhello\r\n0\r\n\r\n"),
    ("extension value empty", b"5;a=\r\nhello\r\n0\r\n\r\n"),
    ("extension with NUL", b"5;a\x00\r\nhello\r\n0\r\n\r\n"),
    ("extension with unterminated quote", b"5;a=\"b\r\nhello\r\n0\r\n\r\n"),
    ("extension too long", b"5;" + b"a" * 40 + b"\r\nhello\r\n0\r\n\r\n"),
    ("size line too long", b"5" + b" " * 60),
    ("trailer without colon", b"0\r\nX\r\n\r\n"),
    ("trailer space before colon", b"0\r\nX : 1\r\n\r\n"),
    ("trailer obs-fold", b"0\r\nX: 1\r\n 2\r\n\r\n"),
    ("trailer with NUL", b"0\r\nX: \x00\r\n\r\n"),
    ("trailer with bare CR", b"0\r\nX: a\rb\r\n\r\n"),
    ("trailer bare LF", b"0\r\nX: 1\n\r\n"),
    ("final bare LF", b"0\r\n\n"),
    ("too many trailer fields", b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"),
    ("trailer section too large", b"0\r\nX: " + b"a" * 70 + b"\r\n\r\n"),
]


class ChunkedBodyTest(unittest.TestCase):
    """ChunkedBody parses RFC 9112 §7.1 strictly, whatever the pieces it is fed."""

    def test_valid_bodies(self) -> None:
        for name, body, size in CHUNKED:
            stream = body + NEXT
            for pieces in splits(stream):
                with self.subTest(name, pieces=pieces[:8]):
                    decoder = ChunkedBody(100, LIMITS)
                    self.assertEqual(feed_pieces(decoder, stream, pieces), len(body))
                    self.assertTrue(decoder.done)
                    self.assertEqual(decoder.received, size)

    def test_malformed_bodies(self) -> None:
        for name, body in CHUNKED_BAD:
            stream = body + NEXT
            for pieces in splits(stream):
                with self.subTest(name, pieces=pieces[:8]):
                    with self.assertRaises(HTTPError) as caught:
                        feed_pieces(ChunkedBody(100, LIMITS), stream, pieces)
                    self.assertEqual((caught.exception.status, caught.exception.close),
                                     (400, True))

    def test_body_too_large(self) -> None:
        for stream in (b"65\r\n", b"32\r\n" + b"x" * 50 + b"\r\n33\r\n",
                       b"ffffffffffffffff\r\n"):
            with self.subTest(stream), self.assertRaises(HTTPError) as caught:
                ChunkedBody(100, LIMITS).feed(stream)
            self.assertEqual((caught.exception.status, caught.exception.close), (413, True))

    def test_body_at_max_size(self) -> None:
        decoder = ChunkedBody(100, LIMITS)
        stream = b"32\r\n" + b"x" * 50 + b"\r\n32\r\n" + b"y" * 50 + b"\r\n0\r\n\r\n"
        self.assertEqual(decoder.feed(stream), len(stream))
        self.assertEqual(decoder.received, 100)

    def test_not_done_before_the_final_crlf(self) -> None:
        stream = b"1\r\nx\r\n0\r\nX: 1\r\n\r\n"
        decoder = ChunkedBody(100, LIMITS)
        self.assertEqual(decoder.feed(stream[:-1]), len(stream) - 1)
        self.assertFalse(decoder.done)
        self.assertEqual(decoder.feed(stream[-1:] + NEXT), 1)
        self.assertTrue(decoder.done)
        self.assertEqual(decoder.feed(NEXT), 0)

    def test_received_counts_data_as_it_arrives(self) -> None:
        decoder = ChunkedBody(100, LIMITS)
        decoder.feed(b"a\r\n0123")
        self.assertEqual(decoder.received, 4)

    def test_accepts_bytes_bytearray_and_memoryview(self) -> None:
        stream = b"1\r\nx\r\n0\r\n\r\n"
        for data in (stream, bytearray(stream), memoryview(stream), memoryview(stream + NEXT)):
            with self.subTest(type(data)):
                decoder = ChunkedBody(100, LIMITS)
                self.assertEqual(decoder.feed(data), len(stream))
                self.assertTrue(decoder.done)

    def test_request_smuggling_through_chunk_size_overflow_refused(self) -> None:
        # Some parsers wrap a long size around to a small number and read the rest as a request.
        with self.assertRaises(HTTPError) as caught:
            ChunkedBody(1 << 70, LIMITS).feed(b"10000000000000005\r\nhello\r\n0\r\n\r\n")
        self.assertEqual(caught.exception.status, 400)

    def test_request_smuggling_through_lf_only_chunk_refused(self) -> None:
        with self.assertRaises(HTTPError):
            ChunkedBody(100, LIMITS).feed(b"5\nhello\n0\n\n" + NEXT)


if __name__ == "__main__":
    unittest.main()
