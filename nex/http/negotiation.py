"""Proactive negotiation fields, parsed once: weights and ``Accept`` (RFC 9110 §12.4-12.5).

The grammar (:mod:`nex.http.grammar`) matches the elements; this module turns them into
values: a qvalue into a weight in thousandths (:func:`weight`) and an ``Accept`` field into
its media ranges (:func:`media_ranges`).  What a handler makes of them (which sidecar, HTML
or JSON) stays with the handler.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from nex.http.grammar import MEDIA_RANGE, parse_list


class MediaRange(NamedTuple):
    """One ``Accept`` element: ``kind/subtype`` in lower case (``*`` for a wildcard) and its
    weight in thousandths."""

    kind: str
    subtype: str
    weight: int


def weight(qvalue: Optional[str]) -> int:
    """A qvalue (RFC 9110 §12.4.2) as matched by the grammar, in thousandths: ``"0.5"`` is
    500; no qvalue is 1000."""
    if qvalue is None:
        return 1000
    whole, _, fraction = qvalue.partition(".")
    return 1000 * int(whole) + int(fraction.ljust(3, "0"))


def media_ranges(accept: str) -> Optional[Tuple[MediaRange, ...]]:
    """The media ranges of ``Accept: accept`` in the order sent, or None when it is
    malformed (including a ``*/subtype``, which is no media range).  Media type parameters
    other than the weight are dropped."""
    elements = parse_list(accept, MEDIA_RANGE)
    if elements is None:
        return None
    ranges = []
    for match in elements:
        kind, subtype = match.group("type").lower(), match.group("subtype").lower()
        if kind == "*" and subtype != "*":
            return None
        ranges.append(MediaRange(kind, subtype, weight(match.group("qvalue"))))
    return tuple(ranges)
