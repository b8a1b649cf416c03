"""Fuzzing the parser and the chunked decoder: any input ends in a Request or an HTTPError.

Besides arbitrary bytes and mutated valid requests, pathological inputs of about 50 KB check
that no pattern backtracks catastrophically (such an input would not finish), and a count of
executed Python lines checks that the work grows linearly with the input.  Nothing here
measures wall-clock time.
"""

from __future__ import annotations

import sys
import unittest
from typing import Callable, Iterator, List, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nex.http.body import ChunkedBody
from nex.http.errors import HTTPError
from nex.http.framing import HeadLimits
from nex.http.request import HeadScanner, Request, _parse_head, parse_head

SMALL = HeadLimits(request_line=200, header_block=1000, header_count=20)
LARGE = HeadLimits(request_line=200_000, header_block=400_000, header_count=100_000)
PATHOLOGICAL_SIZE = 50_000

VALID_HEAD = (b"POST /upload?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
              b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
              b"X-Quoted: a \"b\" c\r\n\r\n")
VALID_CHUNKED = b"4;ext=\"v\"\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n"
# Bytes with a meaning somewhere in the grammar, for mutations and pathological units.
SPECIAL = [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b",", b";", b"=", b"\"", b"\\", b"/",
           b"?", b"#", b"%", b"@", b"[", b"]", b"\x00", b"\x0b", b"\x7f", b"\x80", b"\xff",
           b"a", b"0", b"f", b"chunked", b"HTTP/1.1", b"Host: h\r\n", b"Content-Length: 1\r\n"]

HYPOTHESIS = settings(deadline=None, max_examples=300,
                      suppress_health_check=[HealthCheck.too_slow])
SLOW_HYPOTHESIS = settings(deadline=None, max_examples=25,
                           suppress_health_check=[HealthCheck.too_slow])


def parse_buffer(buffer: bytes, limits: HeadLimits) -> Optional[Request]:
    """HeadScanner then parse_head, as the connection loop does; HTTPError propagates."""
    found = HeadScanner(limits).scan(buffer)
    if found is None:
        return None
    start, end = found
    if not (0 <= start < end <= len(buffer)):
        raise AssertionError((start, end, len(buffer)))
    return parse_head(buffer[start:end], limits)


def scan_outcome(data: bytes, cuts: List[int]) -> object:
    """What one scanner says once ``data`` has arrived in pieces of the sizes ``cuts``
    (the rest in one last piece): where the head lies, None, or the error's status."""
    scanner = HeadScanner(SMALL)
    buffer = bytearray()
    offset = 0
    try:
        for size in cuts + [len(data)]:
            buffer += data[offset:offset + size]
            offset += size
            found = scanner.scan(buffer)
            if found is not None:
                return found
        return None
    except HTTPError as error:
        return error.status


def survives(call: Callable[[], object]) -> None:
    """Run ``call``; an HTTPError is a fine outcome, any other exception a failure."""
    try:
        call()
    except HTTPError as error:
        if error.status not in (400, 413, 414, 431, 501, 505):
            raise AssertionError(f"unexpected status {error.status}")
        if not error.close:
            raise AssertionError(f"a {error.status} that keeps the connection open")


def feed_all(decoder: ChunkedBody, data: bytes, cuts: List[int]) -> int:
    """Feed ``data`` cut at ``cuts``, keeping unconsumed bytes; returns bytes consumed."""
    consumed, buffered, offset = 0, b"", 0
    for size in cuts + [len(data)]:
        buffered += data[offset:offset + size]
        offset += size
        taken = decoder.feed(buffered)
        if not (0 <= taken <= len(buffered)):
            raise AssertionError(f"took {taken} of {len(buffered)} bytes")
        consumed += taken
        buffered = buffered[taken:]
        if decoder.done:
            if decoder.feed(buffered) != 0:
                raise AssertionError("took bytes after the last chunk")
            break
    return consumed


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes inserted, deleted or replaced."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        piece = draw(st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=3))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            data[at:at] = piece
        elif action == "delete":
            del data[at:at + len(piece)]
        else:
            data[at:at + len(piece)] = piece
    return bytes(data)


TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TOKENS = st.text(alphabet=TCHARS, min_size=1, max_size=12)
VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xff,
                                        blacklist_characters="\x7f"), max_size=30).map(
    lambda value: value.strip(" "))
PATHS = st.text(alphabet="abcxyz0123456789-._~!$&'()*+,;=:@/%", max_size=30).map(
    lambda path: "/" + path)


class HeadFuzzTest(unittest.TestCase):
    """HeadScanner and parse_head never fail in any way but HTTPError."""

    @HYPOTHESIS
    @given(st.binary(max_size=1200))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        survives(lambda: parse_buffer(data, SMALL))
        survives(lambda: parse_head(data, SMALL))

    @HYPOTHESIS
    @given(st.one_of(mutated(VALID_HEAD), st.lists(st.sampled_from(SPECIAL + [b"GET /a "]),
                                                   max_size=60).map(b"".join)),
           st.lists(st.integers(min_value=1, max_value=40), max_size=10))
    def test_a_whole_buffer_is_scanned_as_its_pieces_would_be(self, data: bytes,
                                                              cuts: List[int]) -> None:
        # A head that is all there at once takes a shorter way through the scanner than
        # one that arrives in pieces; both must find the same head or the same error.
        self.assertEqual(scan_outcome(data, [len(data)]), scan_outcome(data, cuts))

    @HYPOTHESIS
    @given(st.lists(st.sampled_from(SPECIAL), max_size=60).map(b"".join))
    def test_grammar_soup(self, data: bytes) -> None:
        survives(lambda: parse_buffer(b"GET / HTTP/1.1\r\n" + data, SMALL))
        survives(lambda: parse_buffer(data + b"\r\n\r\n", SMALL))

    @HYPOTHESIS
    @given(mutated(VALID_HEAD))
    def test_mutated_request(self, data: bytes) -> None:
        survives(lambda: parse_buffer(data, SMALL))
        survives(lambda: parse_head(data, SMALL))

    @HYPOTHESIS
    @given(st.sampled_from(["GET", "HEAD", "OPTIONS", "get", "X-1"]), PATHS,
           st.sampled_from(["HTTP/1.0", "HTTP/1.1"]),
           st.lists(st.tuples(TOKENS, VALUES), max_size=8), st.binary(max_size=20))
    def test_generated_valid_requests_round_trip(self, method: str, path: str, version: str,
                                                 fields: List[Tuple[str, str]],
                                                 rest: bytes) -> None:
        fields = [(name, value) for name, value in fields
                  if name.lower() not in ("host", "content-length", "transfer-encoding",
                                          "connection")]
        lines = [f"{method} {path} {version}", "Host: example.com"]
        lines += [f"{name}: {value}" for name, value in fields]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        growing = HeadScanner(LARGE)
        for cut in range(len(head)):
            self.assertIsNone(HeadScanner(LARGE).scan(head[:cut]))
            self.assertIsNone(growing.scan(head[:cut]))
        self.assertEqual(HeadScanner(LARGE).scan(head + rest), (0, len(head)))
        self.assertEqual(growing.scan(head + rest), (0, len(head)))
        request = parse_head(head, LARGE)
        self.assertEqual((request.method, request.path, request.version),
                         (method, path.partition("?")[0], version))
        self.assertEqual(request.headers.items()[1:], fields)

    @HYPOTHESIS
    @given(st.binary(max_size=300), st.integers(1, 50))
    def test_found_head_never_overruns(self, data: bytes, extra: int) -> None:
        buffer = data + b"\r\n\r\n" + b"x" * extra
        try:
            found = HeadScanner(SMALL).scan(buffer)
        except HTTPError:
            return
        if found is None:  # only empty lines, which swallow the blank line too
            self.assertEqual(data, b"\r\n" * (len(data) // 2))
            return
        start, end = found
        self.assertLessEqual(end, len(data) + 4)

    @HYPOTHESIS
    @given(st.lists(st.sampled_from([b"1", b"-", b"9" * 18, b"0", b",", b" ", b"\t", b"\r",
                                     b"\n", b"\x00", b"\xff", b"a", b"\r\nRange: bytes="]),
                    max_size=12).map(b"".join),
           st.lists(st.sampled_from(SPECIAL + [b"Range: bytes=3-\r\n"]), max_size=6).map(
               b"".join))
    def test_a_head_with_a_range_parses_as_it_would_with_nothing_remembered(
            self, value: bytes, after: bytes) -> None:
        # A Range value set apart from the rest of the head must never change the outcome,
        # whatever the value, what follows it, and the limits.
        head = b"GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=" + value + b"\r\n" + after + b"\r\n"
        for limits in (SMALL, HeadLimits(header_block=len(head) - 3, header_count=3)):
            self.assertEqual(outcome(lambda: parse_head(head, limits)),
                             outcome(lambda: _parse_head(head, limits)))


def outcome(parse: Callable[[], Request]) -> object:
    """A request's parts, its field pairs, its field lines and its Range values, or the
    refusal's status."""
    try:
        request = parse()
    except HTTPError as error:
        return error.status
    return (request._replace(headers=None), request.headers.items(),
            request.headers.lines_without(frozenset()), request.headers.get_all("range"))


def pathological_heads(unit: bytes, count: int, tail: bytes = b"") -> Iterator[bytes]:
    """Heads with ``unit`` repeated ``count`` times, then ``tail``, in every part of the grammar.

    A tail that breaks the grammar after a long valid run is what makes a backtracking
    pattern retry every way of splitting the run.
    """
    run = unit * count + tail
    yield b"GET /" + run + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: h\r\nX: a" + run + b"\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: h\r\nX" + run + b": 1\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: " + run + b"\r\n\r\n"
    yield b"GET http://" + run + b"/ HTTP/1.1\r\nHost: h\r\n\r\n"
    yield b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: a" + run + b"\r\n\r\n"
    yield b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: a;b=\"" + run + b"\r\n\r\n"
    yield b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1" + run + b"\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: h\r\nConnection: a" + run + b"\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: h\r\n" + run + b"\r\n\r\n"
    yield b"\r\n" * count + b"GET / HTTP/1.1\r\n" + run


def pathological_bodies(unit: bytes, count: int, tail: bytes = b"") -> Iterator[bytes]:
    """Chunked bodies with ``unit`` repeated ``count`` times, then ``tail``, in every part
    of the framing."""
    run = unit * count + tail
    yield b"1;a" + run + b"\r\nx\r\n0\r\n\r\n"
    yield b"1;a=\"" + run + b"\r\nx\r\n0\r\n\r\n"
    yield b"0\r\nX: a" + run + b"\r\n\r\n"
    yield b"0\r\n" + run + b"\r\n\r\n"
    yield run + b"\r\n"


PATHOLOGICAL_UNITS = SPECIAL + [b" a", b"\ta", b"a ", b";a", b";a=b", b" ;a", b"1,", b", 1",
                                b"%4", b"%41", b"a:", b"\\\"", b"1\r\nx\r\n", b"X: 1\r\n"]
# Tails that end a run of valid bytes with something the grammar refuses at that point.
PATHOLOGICAL_TAILS = [b"", b"\x00", b"\r", b" ", b"\"", b"\\"]
UNITS = st.lists(st.sampled_from(PATHOLOGICAL_UNITS), min_size=1, max_size=3).map(b"".join)


class PathologicalInputTest(unittest.TestCase):
    """About 50 KB of a repeated unit anywhere in a head or a body still parses promptly."""

    def test_every_unit_and_tail_finishes(self) -> None:
        for unit in PATHOLOGICAL_UNITS:
            count = PATHOLOGICAL_SIZE // len(unit)
            for tail in PATHOLOGICAL_TAILS:
                for head in pathological_heads(unit, count, tail):
                    survives(lambda: parse_buffer(head, LARGE))
                for body in pathological_bodies(unit, count, tail):
                    survives(lambda: ChunkedBody(1 << 30, LARGE).feed(body))

    @SLOW_HYPOTHESIS
    @given(UNITS, st.sampled_from([b""] + SPECIAL))
    def test_pathological_heads_finish(self, unit: bytes, tail: bytes) -> None:
        for head in pathological_heads(unit, PATHOLOGICAL_SIZE // len(unit), tail):
            survives(lambda: parse_buffer(head, LARGE))
            survives(lambda: parse_head(head, LARGE))

    @SLOW_HYPOTHESIS
    @given(UNITS, st.sampled_from([b""] + SPECIAL))
    def test_pathological_bodies_finish(self, unit: bytes, tail: bytes) -> None:
        for body in pathological_bodies(unit, PATHOLOGICAL_SIZE // len(unit), tail):
            survives(lambda: ChunkedBody(1 << 30, LARGE).feed(body))


def count_lines(call: Callable[[], object]) -> int:
    """How many Python lines ``call`` executes: a measure of work that ignores the clock."""
    executed = 0

    def trace(frame: object, event: str, arg: object) -> Callable[..., object]:
        nonlocal executed
        if event == "line":
            executed += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        survives(call)
    finally:
        sys.settrace(previous)
    return executed


class LinearWorkTest(unittest.TestCase):
    """Four times the input never costs more than about four times the work."""

    def assert_linear(self, build: Callable[[int], Callable[[], object]], label: str) -> None:
        small = count_lines(build(2_000))
        large = count_lines(build(8_000))
        self.assertLessEqual(large, 4 * small + 50, f"{label}: {small} -> {large} lines")

    def test_head_work_is_linear(self) -> None:
        for unit in (b"X: 1\r\n", b"a", b" a", b", ", b";a=b", b"\r\n", b"%41"):
            for index in range(len(list(pathological_heads(unit, 1)))):
                def build(count: int, unit: bytes = unit, index: int = index
                          ) -> Callable[[], object]:
                    head = list(pathological_heads(unit, count))[index]
                    return lambda: parse_buffer(head, LARGE)
                self.assert_linear(build, f"head {index} of {unit!r}")

    def test_chunked_work_is_linear_fed_whole(self) -> None:
        for unit in (b"1\r\nx\r\n", b";a", b" ;a=\"b\"", b"X: 1\r\n", b"a"):
            for index in range(len(list(pathological_bodies(unit, 1)))):
                def build(count: int, unit: bytes = unit, index: int = index
                          ) -> Callable[[], object]:
                    body = list(pathological_bodies(unit, count))[index]
                    return lambda: ChunkedBody(1 << 30, LARGE).feed(body)
                self.assert_linear(build, f"body {index} of {unit!r}")

    def test_chunked_work_is_linear_fed_byte_by_byte(self) -> None:
        def build(count: int) -> Callable[[], object]:
            body = b"1;a=b\r\nx\r\n" * count + b"0\r\nX: " + b"y" * count + b"\r\n\r\n"
            return lambda: feed_all(ChunkedBody(1 << 30, LARGE), body, [1] * len(body))
        self.assert_linear(build, "byte by byte")


class ChunkedFuzzTest(unittest.TestCase):
    """ChunkedBody never fails in any way but HTTPError, however it is fed."""

    @HYPOTHESIS
    @given(st.binary(max_size=600), st.lists(st.integers(0, 40), max_size=30))
    def test_arbitrary_bytes(self, data: bytes, cuts: List[int]) -> None:
        survives(lambda: feed_all(ChunkedBody(1000, SMALL), data, cuts))

    @HYPOTHESIS
    @given(mutated(VALID_CHUNKED), st.lists(st.integers(0, 10), max_size=30))
    def test_mutated_body(self, data: bytes, cuts: List[int]) -> None:
        survives(lambda: feed_all(ChunkedBody(1000, SMALL), data + b"GET", cuts))

    @HYPOTHESIS
    @given(st.lists(st.binary(min_size=1, max_size=40), max_size=10),
           st.lists(st.integers(0, 10), max_size=40), st.binary(max_size=10))
    def test_generated_bodies_decode_whatever_the_cuts(self, chunks: List[bytes],
                                                       cuts: List[int], rest: bytes) -> None:
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
        body += b"0\r\n\r\n"
        decoder = ChunkedBody(1000, SMALL)
        self.assertEqual(feed_all(decoder, body + rest, cuts), len(body))
        self.assertTrue(decoder.done)
        self.assertEqual(decoder.received, sum(map(len, chunks)))


if __name__ == "__main__":
    unittest.main()
