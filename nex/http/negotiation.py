"""Proactive negotiation (RFC 9110 §12.5.1): which of two media types ``Accept`` ranks higher.

Listings choose between their page and JSON, error replies between a page, JSON and one line
of text; both ask :func:`prefers` here, so ``Accept`` is read one way everywhere.
"""

from __future__ import annotations

import functools
from typing import List, Optional, Tuple

from nex.http.grammar import MEDIA_RANGE, parse_list


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
    if accept is None:
        return False
    ranges = parse_list(accept, MEDIA_RANGE)
    if ranges is None:
        return False
    parsed = []
    for match in ranges:
        kind, subtype = match.group("type").lower(), match.group("subtype").lower()
        if kind == "*" and subtype != "*":
            return False  # "*/subtype" is no media range
        parsed.append((kind, subtype, _weight(match.group("qvalue"))))
    wanted_rank = _rank(parsed, *wanted.split("/"))
    return wanted_rank[0] > 0 and wanted_rank > _rank(parsed, *other.split("/"))


def _weight(qvalue: Optional[str]) -> int:
    """A qvalue in thousandths: ``"0.5"`` is 500, no qvalue is 1000."""
    if qvalue is None:
        return 1000
    whole, _, fraction = qvalue.partition(".")
    return 1000 * int(whole) + int(fraction.ljust(3, "0"))


def _rank(ranges: List[Tuple[str, str, int]], kind: str, subtype: str) -> Tuple[int, int]:
    """``(weight, specificity)`` the most specific of ``ranges`` gives ``kind/subtype``;
    ``(0, -1)`` when none matches.  The first of equally specific ranges counts."""
    best = (0, -1)
    for range_kind, range_subtype, weight in ranges:
        if range_kind == kind and range_subtype == subtype:
            specificity = 2
        elif range_kind == kind and range_subtype == "*":
            specificity = 1
        elif range_kind == "*":
            specificity = 0
        else:
            continue
        if specificity > best[1]:
            best = (weight, specificity)
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
