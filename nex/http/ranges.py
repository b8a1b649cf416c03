"""Byte ranges: the Range field parsed, checked for abuse and laid out as a body (RFC 9110 §14).

The outcome of :func:`select_ranges` is one of three: ignore the field and send the whole
representation (malformed, another unit, or a request shaped like a denial-of-service
attempt), nothing satisfiable (416), or a list of disjoint ranges in ascending order.
"""

from __future__ import annotations

import secrets
from typing import Callable, List, Optional, Tuple

from nex.http.grammar import RANGE_SPEC, RANGES_SPECIFIER, SINGLE_BYTE_RANGE, parse_list
from nex.http.response import BodyPiece, FileSlice

# A position with more digits than this is past the end of any file; it is capped rather
# than converted, so a header full of digits costs nothing.
_MAX_DIGITS = 19
_BEYOND_ANY_FILE = 10 ** _MAX_DIGITS
# §14.2 and §17.15: overlapping ranges beyond this count mark a request meant to amplify.
_MAX_OVERLAPS = 2

#: ``(first, last)`` as sent: ``last`` None for ``a-``, ``first`` None for the suffix ``-n``.
RangeSpec = Tuple[Optional[int], Optional[int]]
#: ``(first, last)`` byte positions, both inclusive, inside the representation.
ByteRange = Tuple[int, int]


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else _BEYOND_ANY_FILE


def _less(a: str, b: str) -> bool:
    """Whether the decimal ``a`` is smaller than ``b``, exactly, without converting them."""
    a, b = a.lstrip("0"), b.lstrip("0")
    return (len(a), a) < (len(b), b)


def parse_range(value: str, max_ranges: int) -> Optional[List[RangeSpec]]:
    """The range-specs of a ``Range`` field value, or None when the field must be ignored.

    The field is ignored for a unit other than ``bytes`` (case-insensitive), any syntax
    error, an invalid int-range (last-pos before first-pos) or more than ``max_ranges``
    ranges.  Numbers are read with an exact digit grammar: no signs, spaces or underscores.
    """
    specifier = RANGES_SPECIFIER.fullmatch(value)
    if specifier is None or specifier.group("unit").lower() != "bytes":
        return None
    elements = parse_list(specifier.group("set"), RANGE_SPEC)
    if not elements or len(elements) > max_ranges:
        return None
    specs: List[RangeSpec] = []
    for match in elements:
        first, last, suffix = match.group("first", "last", "suffix")
        if suffix is not None:
            specs.append((None, _position(suffix)))
        elif not last:
            specs.append((_position(first), None))
        elif _less(last, first):
            return None
        else:
            specs.append((_position(first), _position(last)))
    return specs


def satisfiable(specs: List[RangeSpec], size: int) -> List[ByteRange]:
    """The specs that overlap a representation of ``size`` bytes, clipped to it, in order.

    An int-range is satisfiable when it starts before the end; a suffix-range when its
    length is non-zero and the representation is not empty (§14.1.1).
    """
    ranges = []
    for first, last in specs:
        if first is None:
            if last and size:
                ranges.append((max(0, size - last), size - 1))
        elif first < size:
            ranges.append((first, size - 1 if last is None else min(last, size - 1)))
    return ranges


def coalesce(ranges: List[ByteRange]) -> List[ByteRange]:
    """Overlapping or adjacent ranges merged, in ascending order (§14.6 allows any order)."""
    merged: List[ByteRange] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def _amplifies(ranges: List[ByteRange], size: int) -> bool:
    """Whether the ranges ask for far more than the representation (§17.15).

    True when they add up to more than twice its size, or more than two of them overlap
    an earlier one; such a request gets the whole representation once instead.
    """
    if sum(last - first + 1 for first, last in ranges) > 2 * size:
        return True
    overlaps, end = 0, -1
    for first, last in sorted(ranges):
        if first <= end:
            overlaps += 1
        end = max(end, last)
    return overlaps > _MAX_OVERLAPS


def select_ranges(value: str, size: int, max_ranges: int) -> Optional[List[ByteRange]]:
    """What to send for ``Range: value`` on ``size`` bytes.

    None: ignore the field and send everything (200).  An empty list: nothing satisfiable
    (416).  Otherwise the disjoint ranges to send (206), ascending.
    """
    single = SINGLE_BYTE_RANGE.fullmatch(value)
    if single is not None and max_ranges > 0:
        # The commonest field, one int-range, answered as the steps below answer it: one
        # range never amplifies and has nothing to merge.
        first, last = map(int, single.groups())
        if last < first:
            return None
        return [(first, min(last, size - 1))] if first < size else []
    return _select(value, size, max_ranges)


def _select(value: str, size: int, max_ranges: int) -> Optional[List[ByteRange]]:
    """:func:`select_ranges` by the general steps: parse, clip, judge, merge."""
    specs = parse_range(value, max_ranges)
    if specs is None:
        return None
    ranges = satisfiable(specs, size)
    if ranges and _amplifies(ranges, size):
        return None
    return coalesce(ranges)


def content_range_line(first: int, last: int, size: int) -> str:
    """The ``Content-Range`` field line, CRLF included, for bytes ``first``..``last`` of
    ``size``: a single range's response and each part of a multipart one carry it."""
    return f"Content-Range: bytes {first}-{last}/{size}\r\n"


def multipart_body(ranges: List[ByteRange], size: int, content_type: str,
                   piece: Callable[[int, int], BodyPiece] = FileSlice
                   ) -> Tuple[str, List[BodyPiece]]:
    """A ``multipart/byteranges`` body (§14.6): its Content-Type and its pieces.

    Each part carries the representation's Content-Type and its own Content-Range; the
    data are ``piece(offset, count)`` (by default a :class:`FileSlice`) between the byte
    strings of the part heads.  The boundary is random, so file contents cannot forge a
    part.
    """
    boundary = secrets.token_hex(16)
    pieces: List[BodyPiece] = []
    delimiter = f"--{boundary}\r\n"
    for first, last in ranges:
        pieces.append((f"{delimiter}Content-Type: {content_type}\r\n"
                       f"{content_range_line(first, last, size)}\r\n"
                       ).encode("latin-1"))
        pieces.append(piece(first, last - first + 1))
        delimiter = f"\r\n--{boundary}\r\n"
    pieces.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return f"multipart/byteranges; boundary={boundary}", pieces
