"""The form parser without sockets: exact grammar, any split of the body, hostile bodies."""

from __future__ import annotations

import unittest
from typing import List, Optional, Sequence, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nex.http.errors import HTTPError
from nex.http.multipart import MultipartParser, Part, form_boundary
from nex.http.framing import HeadLimits
from tests.support import FORM_BOUNDARY, form, part

LIMITS = HeadLimits(request_line=64, header_block=512, header_count=8)
BOUNDARY = FORM_BOUNDARY
#: The RFC 2046 §5.1.1 bchars, space aside (it may not end a boundary).
BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"

Event = Tuple[str, object]


class Collector:
    """A PartHandler that records what the parser reports, data pieces joined."""

    def __init__(self) -> None:
        self.events: List[Event] = []

    def start_part(self, part: Part) -> None:
        self.events.append(("start", part))

    def part_data(self, data: memoryview) -> None:
        if self.events and self.events[-1][0] == "data":
            self.events[-1] = ("data", self.events[-1][1] + bytes(data))
        else:
            self.events.append(("data", bytes(data)))

    def end_part(self) -> None:
        self.events.append(("end", None))


def bound(boundary: bytes, limits: HeadLimits = LIMITS) -> int:
    """The most the parser may hold between two pieces."""
    return max(limits.header_block, limits.request_line + 2, len(boundary) + 4)


def held(parser: MultipartParser) -> int:
    """How many bytes of the body ``parser`` holds: its state, read directly, since nothing
    it does shows the memory it keeps."""
    return len(parser._buffer)  # pylint: disable=protected-access


def parse(body: bytes, pieces: Sequence[int] = (), boundary: bytes = BOUNDARY,
          limits: HeadLimits = LIMITS, test: Optional[unittest.TestCase] = None) -> List[Event]:
    """Feed ``body`` cut after each size in ``pieces`` (the rest in one piece), then finish;
    the events reported.  With ``test``, check the memory bound after every piece."""
    handler = Collector()
    parser = MultipartParser(boundary, handler, limits)
    offset = 0
    for size in list(pieces) + [len(body)]:
        parser.feed(body[offset:offset + size])
        offset += size
        if test is not None:
            test.assertLessEqual(held(parser), bound(boundary, limits))
        if offset >= len(body):
            break
    parser.finish()
    return handler.events


def events_of(*parts: Tuple[Part, bytes]) -> List[Event]:
    """The events a well-formed body of ``parts`` gives."""
    events: List[Event] = []
    for described, data in parts:
        events.append(("start", described))
        if data:
            events.append(("data", data))
        events.append(("end", None))
    return events


FILE = part('form-data; name="file"; filename="a.txt"', b"hello\r\nworld",
            "Content-Type: text/plain\r\n")
FIELD = part('form-data; name="note"', b"some text")

# (name, body, expected events): each must parse whole, split anywhere.
GOOD_BODIES = (
    ("one file", form(FILE), events_of((Part("file", "a.txt"), b"hello\r\nworld"))),
    ("file and field", form(FIELD, FILE),
     events_of((Part("note", None), b"some text"), (Part("file", "a.txt"), b"hello\r\nworld"))),
    ("empty data", form(part('form-data; name="f"; filename="e"', b"")),
     events_of((Part("f", "e"), b""))),
    ("no final line break", form(FILE, epilogue=b""),
     events_of((Part("file", "a.txt"), b"hello\r\nworld"))),
    ("preamble and epilogue", form(FILE, preamble=b"This is a preamble.\r\n",
                                   epilogue=b"\r\nThis is the epilogue.\r\n--x"),
     events_of((Part("file", "a.txt"), b"hello\r\nworld"))),
    ("empty preamble line", form(FILE, preamble=b"\r\n"),
     events_of((Part("file", "a.txt"), b"hello\r\nworld"))),
    ("transport padding", b"--" + BOUNDARY + b" \t \r\n" + FILE + b"\r\n--" + BOUNDARY
     + b"-- \t\r\n", events_of((Part("file", "a.txt"), b"hello\r\nworld"))),
    ("padding after the final boundary, then the end",
     b"--" + BOUNDARY + b"\r\n" + FILE + b"\r\n--" + BOUNDARY + b"--  ",
     events_of((Part("file", "a.txt"), b"hello\r\nworld"))),
    ("data like a boundary but not one",
     form(part('form-data; name="f"; filename="x"',
               b"--" + BOUNDARY + b"\r\n\n--" + BOUNDARY + b"\r--" + BOUNDARY[:-1] + b"\r\n-")),
     events_of((Part("f", "x"), b"--" + BOUNDARY + b"\r\n\n--" + BOUNDARY + b"\r--"
                + BOUNDARY[:-1] + b"\r\n-"))),
    ("quoted-pair escapes", form(part(r'form-data; name="a\"b"; filename="c\\d\"e.txt"', b"x")),
     events_of((Part('a"b', 'c\\d"e.txt'), b"x"))),
    ("UTF-8 names", form(part('form-data; name="café"; filename="naïve ☃.txt"', b"x")),
     events_of((Part("café", "naïve ☃.txt"), b"x"))),
    ("token values and case", form(part("FORM-DATA; NAME=file; FileName=b.bin", b"x")),
     events_of((Part("file", "b.bin"), b"x"))),
    ("empty file name", form(part('form-data; name="file"; filename=""', b"")),
     events_of((Part("file", ""), b""))),
    ("filename* is ignored", form(part(
        'form-data; name="f"; filename="a.txt"; filename*=UTF-8\'\'b.txt', b"x")),
     events_of((Part("f", "a.txt"), b"x"))),
    ("identity transfer encoding", form(part('form-data; name="f"', b"x",
                                             "Content-Transfer-Encoding: binary\r\n")),
     events_of((Part("f", None), b"x"))),
    ("other headers and OWS", form(b"content-type:  text/plain \r\nX-Other: 1\r\n"
                                   b"content-disposition:form-data ; name=f\r\n\r\nx"),
     events_of((Part("f", None), b"x"))),
    ("an empty parameter", form(part('form-data;; name="f";', b"x")),
     events_of((Part("f", None), b"x"))),
    ("many parts", form(*[part(f'form-data; name="f{n}"; filename="{n}"', bytes([n]) * n)
                          for n in range(1, 20)]),
     events_of(*[(Part(f"f{n}", str(n)), bytes([n]) * n) for n in range(1, 20)])),
)

D = b"--" + BOUNDARY
# (name, body): each must be refused with 400, however it is split.
BAD_BODIES = (
    ("empty body", b""),
    ("no boundary at all", b"just some text\r\n"),
    ("preamble without its line break, so no part", b"junk" + form(FILE)),
    ("no part", D + b"--\r\n"),
    ("truncated in the data", form(FILE)[:-30]),
    ("truncated in the headers", D + b"\r\nContent-Disposition: form-da"),
    ("truncated after a delimiter", D + b"\r\n" + FILE + b"\r\n" + D),
    ("truncated in the final delimiter", form(FILE)[:-3]),
    ("final delimiter and a lone CR", D + b"\r\n" + FILE + b"\r\n" + D + b"--\r"),
    ("text after a boundary", D + b"x\r\n" + FILE + b"\r\n" + D + b"--"),
    ("one dash after a boundary", D + b"-\r\n" + FILE + b"\r\n" + D + b"--"),
    ("LF alone after a boundary", D + b"\n" + FILE + b"\r\n" + D + b"--"),
    ("text after the final boundary", form(FILE, epilogue=b"x")),
    ("CR and text after the final boundary", form(FILE, epilogue=b"\rx")),
    ("no Content-Disposition", form(b"Content-Type: text/plain\r\n\r\nx")),
    ("no header at all", form(b"\r\nx")),
    ("not form-data", form(part('attachment; name="f"', b"x"))),
    ("form-data prefix", form(part('form-datax; name="f"', b"x"))),
    ("no name", form(part('form-data; filename="a"', b"x"))),
    ("parameter twice", form(part('form-data; name="a"; NAME="b"', b"x"))),
    ("space around =", form(part('form-data; name = "a"', b"x"))),
    ("unterminated quote", form(part('form-data; name="a', b"x"))),
    ("text after a parameter", form(part('form-data; name="a"x', b"x"))),
    ("two Content-Disposition fields", form(part('form-data; name="a"', b"x",
                                                 'Content-Disposition: form-data; name="b"\r\n'))),
    ("base64 transfer encoding", form(part('form-data; name="f"', b"eA==",
                                           "Content-Transfer-Encoding: base64\r\n"))),
    ("bare LF in headers", form(b'Content-Disposition: form-data; name="f"\n\r\nx')),
    ("bare CR in headers", form(b'Content-Disposition: form-data; name="f"\rX: y\r\n\r\nx')),
    ("obs-fold", form(b'Content-Disposition: form-data;\r\n name="f"\r\n\r\nx')),
    ("space before the colon", form(b'Content-Disposition : form-data; name="f"\r\n\r\nx')),
    ("control character in a header", form(b'Content-Disposition: form-data; name="\x01"'
                                           b"\r\n\r\nx")),
    ("file name not UTF-8", form(b'Content-Disposition: form-data; name="f"; filename="\xff"'
                                 b"\r\n\r\nx")),
    ("too many header fields", form(b"".join(b"X-%d: 1\r\n" % n for n in range(8))
                                    + part('form-data; name="f"', b"x"))),
    ("header section too large", form(b"X: " + b"a" * 600 + b"\r\n"
                                      + part('form-data; name="f"', b"x"))),
    ("boundary line too long", D + b" " * 80 + b"\r\n" + FILE + b"\r\n" + D + b"--"),
    ("preamble too long", form(FILE, preamble=b"p" * 600 + b"\r\n")),
)


class GoodBodyTest(unittest.TestCase):
    """Well-formed bodies give their parts exactly, whole, split anywhere, or byte by byte."""

    def test_whole(self) -> None:
        for name, body, expected in GOOD_BODIES:
            with self.subTest(name=name):
                self.assertEqual(parse(body, test=self), expected)

    def test_split_at_every_position(self) -> None:
        for name, body, expected in GOOD_BODIES:
            for cut in range(1, len(body)):
                with self.subTest(name=name, cut=cut):
                    self.assertEqual(parse(body, [cut], test=self), expected)

    def test_byte_by_byte(self) -> None:
        for name, body, expected in GOOD_BODIES:
            with self.subTest(name=name):
                self.assertEqual(parse(body, [1] * len(body), test=self), expected)

    def test_done_after_the_final_delimiter(self) -> None:
        parser = MultipartParser(BOUNDARY, Collector(), LIMITS)
        body = form(FILE, epilogue=b"")
        parser.feed(body[:-1])
        with self.assertRaises(HTTPError):
            parser.finish()
        parser.feed(body[-1:])
        parser.finish()
        parser.feed(b"\r\nepilogue, ignored")
        parser.finish()

    def test_data_is_passed_on_before_the_part_ends(self) -> None:
        handler = Collector()
        parser = MultipartParser(BOUNDARY, handler, LIMITS)
        parser.feed(D + b'\r\nContent-Disposition: form-data; name="f"\r\n\r\n' + b"x" * 1000)
        self.assertEqual(handler.events[-1], ("data", b"x" * 1000))
        self.assertEqual(held(parser), 0)
        parser.feed(b"\r\n--")  # may start a delimiter: held back
        self.assertEqual(handler.events[-1], ("data", b"x" * 1000))
        self.assertEqual(held(parser), 4)
        parser.feed(b"x")  # it did not
        self.assertEqual(handler.events[-1], ("data", b"x" * 1000 + b"\r\n--x"))

    def test_handler_errors_pass_through(self) -> None:
        class Refusing(Collector):
            def start_part(self, part: Part) -> None:
                raise HTTPError(413, "no")

        parser = MultipartParser(BOUNDARY, Refusing(), LIMITS)
        with self.assertRaises(HTTPError) as caught:
            parser.feed(form(FILE))
        self.assertEqual(caught.exception.status, 413)


class BadBodyTest(unittest.TestCase):
    """Malformed bodies are refused with 400, whole or split anywhere, within the bound."""

    def assertRefused(self, body: bytes, pieces: Sequence[int] = ()) -> None:
        with self.assertRaises(HTTPError) as caught:
            parse(body, pieces, test=self)
        self.assertEqual(caught.exception.status, 400)

    def test_whole_and_split(self) -> None:
        for name, body in BAD_BODIES:
            for pieces in ([], [1] * len(body), [len(body) // 2], [3] * len(body)):
                with self.subTest(name=name, pieces=pieces[:3]):
                    self.assertRefused(body, pieces)

    def test_every_truncation_of_a_good_body(self) -> None:
        body = form(FIELD, FILE, epilogue=b"")
        for end in range(len(body)):
            with self.subTest(end=end):
                self.assertRefused(body[:end])

    def test_huge_header_line_is_refused_within_the_bound(self) -> None:
        parser = MultipartParser(BOUNDARY, Collector(), LIMITS)
        parser.feed(D + b"\r\nX-Long: ")
        fed = 0
        with self.assertRaises(HTTPError) as caught:
            for _ in range(100):
                parser.feed(b"a" * 100)
                fed += 100
        self.assertEqual(caught.exception.status, 400)
        self.assertLessEqual(fed, bound(BOUNDARY) + 100)


class BoundaryTest(unittest.TestCase):
    """The boundary parameter of Content-Type: multipart/form-data (RFC 2046 §5.1.1)."""

    def test_good(self) -> None:
        for value, expected in (
                ("multipart/form-data; boundary=abc", b"abc"),
                ("Multipart/Form-Data;boundary=abc", b"abc"),
                ('multipart/form-data; charset=utf-8; boundary="a b:c"', b"a b:c"),
                ("multipart/form-data; boundary=" + "x" * 70, b"x" * 70),
                ('multipart/form-data; BOUNDARY="' + BCHARS[-70:] + '"', BCHARS[-70:].encode()),
                ("multipart/form-data ; boundary=----WebKitFormBoundaryABC",
                 b"----WebKitFormBoundaryABC")):
            with self.subTest(value=value):
                self.assertEqual(form_boundary(value), expected)

    def test_other_media_types_are_415(self) -> None:
        for value in (None, "", "text/plain", "multipart/mixed; boundary=x",
                      "multipart/form-datax; boundary=x", "application/x-www-form-urlencoded"):
            with self.subTest(value=value):
                with self.assertRaises(HTTPError) as caught:
                    form_boundary(value)
                self.assertEqual(caught.exception.status, 415)

    def test_bad_boundaries_are_400(self) -> None:
        for value in ("multipart/form-data", "multipart/form-data;",
                      "multipart/form-data; boundary=", 'multipart/form-data; boundary=""',
                      "multipart/form-data; boundary=" + "x" * 71,
                      'multipart/form-data; boundary="ends with space "',
                      'multipart/form-data; boundary="a@b"',
                      "multipart/form-data; boundary=a; boundary=b",
                      "multipart/form-data; boundary = a",
                      "multipart/form-data boundary=a"):
            with self.subTest(value=value):
                with self.assertRaises(HTTPError) as caught:
                    form_boundary(value)
                self.assertEqual(caught.exception.status, 400)


# --- Fuzzing ---------------------------------------------------------------------------------

boundaries = st.text(alphabet=BCHARS + " ", min_size=0, max_size=69).flatmap(
    lambda head: st.sampled_from(BCHARS).map(lambda last: (head + last).encode("ascii")))
# Data built from the characters delimiters are made of, so near-misses are common.
data = st.lists(st.sampled_from([b"\r", b"\n", b"-", b"\r\n", b"--", b"a", b"\x00", b"\xff"]),
                max_size=30).map(b"".join)
names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def good_forms(draw) -> Tuple[bytes, bytes, List[Event]]:
    """A boundary, a well-formed body using it, and the events it must give."""
    boundary = draw(boundaries)
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        content = draw(data)
        # The first delimiter after the part's data must be the one that ends it.
        delimiter = b"\r\n--" + boundary
        while (content + delimiter).find(delimiter) != len(content):
            content = content[:-1]
        filename = draw(st.one_of(st.none(), names))
        described = Part(draw(names), filename)
        disposition = f"form-data; name={quote(described.name)}"
        if filename is not None:
            disposition += f"; filename={quote(filename)}"
        parts.append((described, content, part(disposition, content)))
    body = form(*[raw for _, _, raw in parts], boundary=boundary,
                preamble=draw(st.sampled_from([b"", b"\r\n", b"preamble\r\n"])),
                epilogue=draw(st.sampled_from([b"", b"\r\n", b" \r\nepilogue"])))
    return boundary, body, events_of(*[(described, content) for described, content, _ in parts])


class FuzzTest(unittest.TestCase):
    """Generated bodies: good ones parse exactly however they are cut; mutated, truncated and
    random ones raise nothing but HTTPError(400), and the parser stays within its bound."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(good_forms(), st.lists(st.integers(0, 40), max_size=40))
    def test_good_forms_split_anywhere(self, generated, pieces) -> None:
        boundary, body, expected = generated
        limits = HeadLimits(request_line=64, header_block=512, header_count=8)
        self.assertEqual(parse(body, pieces, boundary, limits, test=self), expected)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(good_forms())
    def test_good_forms_split_at_every_position(self, generated) -> None:
        boundary, body, expected = generated
        for cut in range(len(body) + 1):
            self.assertEqual(parse(body, [cut], boundary, test=self), expected)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(good_forms(), st.data())
    def test_mutated_forms_raise_only_400(self, generated, draw) -> None:
        boundary, body, _ = generated
        mutations = draw.draw(st.lists(st.tuples(
            st.integers(0, max(0, len(body))), st.integers(0, 3),
            st.binary(min_size=0, max_size=8)), max_size=4))
        for position, removed, inserted in mutations:
            body = body[:position] + inserted + body[position + removed:]
        body = body[:draw.draw(st.integers(0, len(body)))]  # often truncated too
        pieces = draw.draw(st.lists(st.integers(1, 50), max_size=20))
        try:
            parse(body, pieces, boundary, test=self)
        except HTTPError as error:
            self.assertEqual(error.status, 400)

    @settings(max_examples=300, deadline=None)
    @given(boundaries, st.binary(max_size=400), st.lists(st.integers(1, 64), max_size=20))
    def test_random_bytes_raise_only_400(self, boundary, body, pieces) -> None:
        try:
            parse(b"--" + boundary + body, pieces, boundary, test=self)
        except HTTPError as error:
            self.assertEqual(error.status, 400)

    @settings(max_examples=50, deadline=None)
    @given(boundaries, st.integers(1, 5000), st.integers(1, 700))
    def test_huge_lines_stay_bounded(self, boundary, size, piece) -> None:
        header = b"--" + boundary + b"\r\nX-Huge: " + b"h" * size + b"\r\n"
        padding = b"--" + boundary + b" " * size + b"\r\n"
        for body in (header, padding, b"p" * size):
            with self.assertRaises(HTTPError) as caught:
                parse(body, [piece] * (len(body) // piece + 1), boundary, test=self)
            self.assertEqual(caught.exception.status, 400)


if __name__ == "__main__":
    unittest.main()
