"""Property tests: whatever the Range field says, the body is exactly the right bytes.

A reference reading of RFC 9110 §14, written independently of nex.http.ranges, predicts for
random file contents and random (valid and junk) Range values whether the answer is the
whole file, 416, or 206 with a given set of byte positions; the response must agree, and
its body pieces must describe exactly those slices of the file.
"""

from __future__ import annotations

import re
import unittest
from typing import List, Optional, Set, Tuple

from hypothesis import HealthCheck, given, settings, strategies as st

from nex.http.errors import HTTPError
from tests.support import TempFiles, body_bytes, close, fields, parse_multipart

_SPEC = r"(?:[0-9]+-[0-9]*|-[0-9]+)"
_SEPARATOR = r"[ \t]*,[ \t]*"
_FIELD = re.compile(rf"[Bb][Yy][Tt][Ee][Ss]=((?:{_SPEC})?(?:{_SEPARATOR}(?:{_SPEC})?)*)")
_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)")


def expected_outcome(value: str, size: int, max_ranges: int) -> Optional[Set[int]]:
    """None: whole file (200).  Empty set: 416.  Otherwise the byte positions of the 206."""
    match = _FIELD.fullmatch(value)
    if not match:
        return None
    specs = [spec for spec in re.split(_SEPARATOR, match.group(1)) if spec]
    if not specs or len(specs) > max_ranges:
        return None
    ranges: List[Tuple[int, int]] = []
    for spec in specs:
        first_text, last_text = spec.split("-")
        if first_text == "":
            length = int(last_text)
            if length > 0 and size > 0:
                ranges.append((max(0, size - length), size - 1))
            continue
        first = int(first_text)
        last = int(last_text) if last_text else None
        if last is not None and last < first:
            return None
        if first < size:
            ranges.append((first, size - 1 if last is None else min(last, size - 1)))
    if not ranges:
        return set()
    if sum(last - first + 1 for first, last in ranges) > 2 * size:
        return None
    ordered = sorted(ranges)
    overlapping = sum(1 for index, (first, _) in enumerate(ordered)
                      if any(first <= last for _, last in ordered[:index]))
    if overlapping > 2:
        return None
    return {position for first, last in ranges for position in range(first, last + 1)}


def number(size: int) -> st.SearchStrategy[str]:
    """Decimal positions around the file's size, with leading zeros or absurd lengths."""
    plain = st.integers(min_value=0, max_value=size + 20).map(str)
    padded = st.integers(min_value=0, max_value=size + 5).map(lambda n: f"00{n}")
    huge = st.integers(min_value=20, max_value=60).map(lambda digits: "9" * digits)
    return st.one_of(plain, plain, plain, plain, plain, plain, plain, padded, huge)


@st.composite
def range_field(draw, size: int) -> str:
    """A Range value: mostly well-formed, sometimes mutated into junk."""
    specs = []
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        kind = draw(st.sampled_from(["closed", "closed", "closed", "open", "suffix"]))
        if kind == "closed":
            first = draw(number(size))
            if len(first) < 10 and draw(st.integers(min_value=0, max_value=3)):
                last = str(int(first) + draw(st.integers(min_value=0, max_value=size // 2)))
            else:
                last = draw(number(size))
            specs.append(f"{first}-{last}")
        elif kind == "open":
            specs.append(f"{draw(number(size))}-")
        else:
            specs.append(f"-{draw(number(size))}")
    separator = draw(st.sampled_from([",", ", ", " ,\t", ", ,", ","]))
    unit = draw(st.sampled_from(["bytes"] * 6 + ["Bytes", "BYTES", "items", "byte"]))
    value = f"{unit}={separator.join(specs)}"
    if draw(st.integers(min_value=0, max_value=3)):
        return value
    junk = draw(st.text(alphabet="bytes=0123456789-, \t+_x;\u0661", max_size=6))
    position = draw(st.integers(min_value=0, max_value=len(value)))
    return value[:position] + junk + value[position + draw(st.integers(0, 3)):]


class RangePropertyTest(TempFiles):
    """The bytes described by every response equal the file's matching slices."""

    def check(self, data: bytes, value: str, max_ranges: int, method: str = "GET") -> None:
        target = self.target("blob.bin", data)
        expected = expected_outcome(value, len(data), max_ranges)
        try:
            response = self.serve(target, [("Range", value)], method, max_ranges=max_ranges)
        except HTTPError as error:
            self.assertEqual(error.status, 416)
            self.assertEqual(expected, set(), "416 although a range was satisfiable")
            self.assertEqual(error.headers, (("Content-Range", f"bytes */{len(data)}"),))
            return
        body = body_bytes(response)
        close(response)
        self.assertEqual(response.content_length, len(body))
        if response.status == 200:
            self.assertIsNone(expected)
            self.assertEqual(body, data)
            return
        self.assertEqual(response.status, 206)
        self.assertTrue(expected, "206 although the field should be ignored or unsatisfiable")
        got = fields(response)
        if "content-range" in got:
            parts = [(got["content-range"], body)]
        else:
            parts = [(part_fields["content-range"], part_data)
                     for part_fields, part_data in parse_multipart(body, got["content-type"])]
            self.assertGreater(len(parts), 1)
        covered: Set[int] = set()
        previous_last = -2
        for content_range, part_data in parts:
            match = _CONTENT_RANGE.fullmatch(content_range)
            self.assertIsNotNone(match, content_range)
            first, last, total = (int(group) for group in match.groups())
            self.assertEqual(total, len(data))
            self.assertGreater(first, previous_last + 1, "parts must be disjoint and apart")
            self.assertEqual(part_data, data[first:last + 1])
            covered.update(range(first, last + 1))
            previous_last = last
        self.assertEqual(covered, expected)

    @settings(max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.binary(max_size=200), choice=st.data(),
           max_ranges=st.integers(min_value=1, max_value=8))
    def test_body_matches_file_slices(self, data: bytes, choice, max_ranges: int) -> None:
        value = choice.draw(range_field(len(data)))
        self.check(data, value, max_ranges)

    @settings(max_examples=150, deadline=None)
    @given(data=st.binary(min_size=1, max_size=64), value=st.text(max_size=40))
    def test_arbitrary_text_never_crashes(self, data: bytes, value: str) -> None:
        self.check(data, value, 16)

    @settings(max_examples=150, deadline=None)
    @given(data=st.binary(max_size=100), choice=st.data())
    def test_head_matches_get(self, data: bytes, choice) -> None:
        value = choice.draw(range_field(len(data)))
        self.check(data, value, 16, "HEAD")

    @settings(max_examples=200, deadline=None)
    @given(data=st.binary(min_size=8, max_size=300), choice=st.data())
    def test_disjoint_ranges_reassemble_part_by_part(self, data: bytes, choice) -> None:
        cuts = sorted(choice.draw(st.sets(st.integers(min_value=0, max_value=len(data) - 1),
                                          min_size=2, max_size=12)))
        pairs = list(zip(cuts[0::2], cuts[1::2]))
        specs = [f"{first}-{last - 1 if last - 1 >= first else first}"
                 for first, last in pairs]
        order = choice.draw(st.permutations(specs))
        self.check(data, "bytes=" + ",".join(order), 8)

    def test_reference_agrees_with_the_rfc_examples(self) -> None:
        # RFC 9110 §14.1.2 examples on a 10000-byte representation.
        self.assertEqual(expected_outcome("bytes=0-499", 10000, 16), set(range(500)))
        self.assertEqual(expected_outcome("bytes=-500", 10000, 16), set(range(9500, 10000)))
        self.assertEqual(expected_outcome("bytes=9500-", 10000, 16), set(range(9500, 10000)))
        self.assertEqual(expected_outcome("bytes=0-0,-1", 10000, 16), {0, 9999})
        self.assertEqual(expected_outcome("bytes=10000-", 10000, 16), set())


if __name__ == "__main__":
    unittest.main()
