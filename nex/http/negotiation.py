"""Proactive negotiation fields, parsed once: weights and ``Accept`` (RFC 9110 §12.4-12.5).

The grammar (:mod:`nex.http.grammar`) matches the elements; this module turns them into
values: a qvalue into a weight in thousandths (:func:`weight`) and an ``Accept`` field into
its media ranges (:func:`media_ranges`); and which of two media types ``Accept`` ranks
higher (:func:`prefers`), which listings (page or JSON) and error replies (page, JSON or one
line of text, :func:`error_form`) both ask, so ``Accept`` is read one way everywhere.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence, Tuple

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


@functools.lru_cache(maxsize=256)
def prefers(accept: Optional[str], wanted: str, other: str) -> bool:
    """Whether ``Accept: accept`` ranks the media type ``wanted`` above ``other``.

    Each type takes the weight of the most specific range that matches it (RFC 9110
    §12.5.1: ``application/json`` before ``application/*`` before ``*/*``); media type
    parameters other than the weight are not compared.  ``wanted`` wins with a higher weight,
    or with an equal weight from a more specific range (``application/json, */*`` prefers
    JSON to HTML); otherwise, and when ``Accept`` is absent, malformed or refuses both
    (``q=0``), it does not.  Cached: clients send few distinct values.
    """
    ranges = media_ranges(accept) if accept is not None else None
    if ranges is None:
        return False
    wanted_rank = _rank(ranges, *wanted.split("/"))
    return wanted_rank[0] > 0 and wanted_rank > _rank(ranges, *other.split("/"))


def _rank(ranges: Sequence[MediaRange], kind: str, subtype: str) -> Tuple[int, int]:
    """``(weight, specificity)`` the most specific of ``ranges`` gives ``kind/subtype``;
    ``(0, -1)`` when none matches.  The first of equally specific ranges counts."""
    best = (0, -1)
    for media in ranges:
        if media.kind == kind and media.subtype == subtype:
            specificity = 2
        elif media.kind == kind and media.subtype == "*":
            specificity = 1
        elif media.kind == "*":
            specificity = 0
        else:
            continue
        if specificity > best[1]:
            best = (media.weight, specificity)
    return best


def error_form(accept: Optional[str], query: str) -> str:
    """How an error reply suits its client: ``"json"``, ``"html"`` or ``"text"``.

    JSON for ``?format=json`` in the query (as sent, without ``?``) or an ``Accept`` that
    ranks ``application/json`` above ``text/html``; the HTML page for ``?format=html`` or an
    ``Accept`` that ranks ``text/html`` above ``text/plain``, as browsers send it; otherwise
    (curl's ``*/*``, no ``Accept`` at all) one line of text.
    """
    if "format=" in query:
        for name, _, value in (item.partition("=") for item in query.split("&")):
            if name == "format" and value in ("json", "html"):
                return value
    if prefers(accept, "application/json", "text/html"):
        return "json"
    if prefers(accept, "text/html", "text/plain"):
        return "html"
    return "text"
