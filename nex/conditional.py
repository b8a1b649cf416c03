"""Validators and preconditions: ETag, Last-Modified and the If-* fields (RFC 9110 §8.8, §13).

The static handler computes a representation's validators once and asks this module whether
the request's preconditions hold.  Every field is parsed with its exact grammar; a malformed
date is ignored, a malformed entity-tag list counts as "no tag matches".
"""

from __future__ import annotations

import calendar
import functools
import re
import time
from typing import List, Optional, Sequence, Tuple, Union

from nex.errors import HTTPError
from nex.request import Headers

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name: number for number, name in enumerate(_MONTHS, 1)}

# RFC 9110 §5.6.7: HTTP-date is case-sensitive; IMF-fixdate is the preferred form, the
# obsolete RFC 850 and asctime forms must still be accepted.
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_MONTH = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_IMF_FIXDATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) " + _MONTH + r" ([0-9]{4}) " + _TIME + " GMT")
_RFC850_DATE = re.compile(
    r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    r"([0-9]{2})-" + _MONTH + r"-([0-9]{2}) " + _TIME + " GMT")
_ASCTIME_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) " + _MONTH + r" ([0-9]{2}| [0-9]) " + _TIME
    + r" ([0-9]{4})")

# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc excludes DQUOTE,
# space and controls but includes ",", so a list cannot simply be split on commas.
_ENTITY_TAG = re.compile(r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")')
_OWS = " \t"

#: ``parse_etag_list`` result for ``*``.
ANY = "*"
EntityTags = Union[str, List[Tuple[bool, str]]]


@functools.lru_cache(maxsize=1024)
@functools.lru_cache(maxsize=4096)  # files keep their dates: most calls repeat
def format_http_date(seconds: int) -> str:
    """``seconds`` since the epoch as an IMF-fixdate: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(seconds)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def parse_http_date(value: str, now: Optional[float] = None) -> Optional[int]:
    """An HTTP-date in any of its three forms as seconds since the epoch, or None if invalid.

    The weekday is not checked against the date.  A two-digit RFC 850 year more than 50
    years in the future means the most recent past year with those digits (§5.6.7).
    """
    match = _IMF_FIXDATE.fullmatch(value)
    if match:
        day, month, year, hour, minute, second = match.groups()
        year_number = int(year)
    else:
        match = _RFC850_DATE.fullmatch(value)
        if match:
            day, month, year, hour, minute, second = match.groups()
            this_year = time.gmtime(time.time() if now is None else now).tm_year
            year_number = this_year - this_year % 100 + int(year)
            if year_number > this_year + 50:
                year_number -= 100
        else:
            match = _ASCTIME_DATE.fullmatch(value)
            if not match:
                return None
            month, day, hour, minute, second, year = match.groups()
            year_number = int(year)
    day_number, hour_number = int(day.lstrip(" ")), int(hour)
    minute_number, second_number = int(minute), int(second)
    month_number = _MONTH_NUMBER[month]
    # Year 0000 fits the grammar but not the calendar functions (which start at year 1).
    if year_number < 1:
        return None
    if not (1 <= day_number <= calendar.monthrange(year_number, month_number)[1]
            and hour_number <= 23 and minute_number <= 59 and second_number <= 60):
        return None
    return calendar.timegm((year_number, month_number, day_number,
                            hour_number, minute_number, second_number))


def make_etag(size: int, mtime_ns: int, suffix: str = "") -> str:
    """A strong entity-tag from a file's size and modification time, never its inode.

    The same file contents with the same mtime give the same tag on every machine.
    ``suffix`` (``-br``, ``-gz``, ``-gzip``) tells content-coded variants apart.
    """
    return f'"{size:x}-{mtime_ns:x}{suffix}"'


def parse_etag_list(value: str) -> Optional[EntityTags]:
    """``If-Match``/``If-None-Match`` value: :data:`ANY`, a list of ``(weak, tag)``, or None.

    ``tag`` keeps its quotes.  Empty list elements are skipped (RFC 9110 §5.6.1); anything
    that is not an entity-tag, a comma or optional whitespace makes the value malformed.
    """
    if value.strip(_OWS) == "*":
        return ANY
    tags = []
    position, end = 0, len(value)
    while True:
        while position < end and (value[position] in _OWS or value[position] == ","):
            position += 1
        if position == end:
            return tags
        match = _ENTITY_TAG.match(value, position)
        if not match:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
        while position < end and value[position] in _OWS:
            position += 1
        if position < end and value[position] != ",":
            return None


def _strong_match(tags: Optional[EntityTags], etag: str) -> bool:
    if tags == ANY:
        return True
    return tags is not None and any(not weak and tag == etag for weak, tag in tags)


def _weak_match(tags: Optional[EntityTags], etag: str) -> bool:
    if tags == ANY:
        return True
    return tags is not None and any(tag == etag for _, tag in tags)


def not_modified(headers: Headers, method: str, etag: str, last_modified: int,
                 error_headers: Sequence[Tuple[str, str]] = ()) -> bool:
    """Evaluate the preconditions in RFC 9110 §13.2.2 order for the selected representation.

    Returns True when the answer is 304 Not Modified, False when the request goes on; raises
    ``HTTPError(412)`` when If-Match or If-Unmodified-Since fails (or If-None-Match matches
    for a method other than GET and HEAD).  ``etag`` is the strong tag of the representation,
    ``last_modified`` its Last-Modified in whole seconds; ``error_headers`` go on a 412.
    """
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not _strong_match(parse_etag_list(if_match), etag):
            raise HTTPError(412, "The resource does not match the requested version.",
                            headers=error_headers)
    else:
        since = headers.get("If-Unmodified-Since")
        date = None if since is None else parse_http_date(since)
        if date is not None and last_modified > date:
            raise HTTPError(412, "The resource has changed since the given date.",
                            headers=error_headers)
    safe = method in ("GET", "HEAD")
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if _weak_match(parse_etag_list(if_none_match), etag):
            if safe:
                return True
            raise HTTPError(412, "The resource matches a listed version.", headers=error_headers)
        return False
    if safe:
        since = headers.get("If-Modified-Since")
        date = None if since is None else parse_http_date(since)
        if date is not None and last_modified <= date:
            return True
    return False


def if_range_holds(value: str, etag: str, last_modified: int, now: float) -> bool:
    """Whether ``If-Range: value`` lets the Range field apply (RFC 9110 §13.1.5).

    An entity-tag must match ``etag`` strongly (a weak tag never does).  A date must equal
    Last-Modified exactly and count as a strong validator (§8.8.2.2): the second it names
    must be over, since a file changed twice within one second shares one Last-Modified.
    Anything malformed is false, so the whole representation is sent.
    """
    if value.startswith('"') or value.startswith('W/"'):
        match = _ENTITY_TAG.fullmatch(value)
        return match is not None and match.group(1) is None and match.group(2) == etag
    date = parse_http_date(value, now)
    return date is not None and date == last_modified and now >= last_modified + 1
