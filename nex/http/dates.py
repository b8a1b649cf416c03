"""Times as text: HTTP-dates (RFC 9110 §5.6.7) and Common Log Format times, both ways.

:func:`format_http_date` and :func:`parse_http_date` are the one writer and the one reader
of HTTP-dates; :func:`format_clf_time` writes the log's time stamps.  The day and month
names are the HTTP-date grammar's (:mod:`nex.http.grammar`).  :func:`http_date_now` and
:func:`clf_time_now` give the current second's text, formatted once per second however many
responses and log lines need it.
"""

from __future__ import annotations

import calendar
import functools
import time
from typing import Callable, Optional, Tuple

from nex.http.grammar import DAY_NAMES, HTTP_DATE_FORMS, MONTHS

_MONTH_NUMBERS = {name: number for number, name in enumerate(MONTHS, 1)}


class SecondText:
    """``format(second)`` for the current second, recomputed only when the second changes.

    The second and its text are kept as one tuple, replaced in one assignment, so a reader
    always gets a text that belongs to a second it was computed for.  Threads may race on
    the refresh; each stores a correct pair, so no lock.
    """

    __slots__ = ("_format", "_current")

    def __init__(self, format: Callable[[int], str]) -> None:
        self._format = format
        self._current: Tuple[int, str] = (-1, "")

    def now(self) -> str:
        """The text for the current second."""
        second = int(time.time())
        current = self._current
        if current[0] != second:
            current = (second, self._format(second))
            self._current = current
        return current[1]


def _imf_fixdate(seconds: int) -> str:
    t = time.gmtime(seconds)
    return (f"{DAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


@functools.lru_cache(maxsize=4096)  # files keep their dates: most calls repeat
def format_http_date(seconds: int) -> str:
    """``seconds`` since the epoch as an IMF-fixdate: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return _imf_fixdate(seconds)


def parse_http_date(value: str, now: Optional[float] = None) -> Optional[int]:
    """An HTTP-date in any of its three forms as seconds since the epoch, or None if invalid.

    The weekday is not checked against the date.  A two-digit RFC 850 year more than 50
    years in the future means the most recent past year with those digits (§5.6.7); ``now``
    (default: the current time) says which year that is.
    """
    for form in HTTP_DATE_FORMS:
        match = form.fullmatch(value)
        if match is not None:
            break
    else:
        return None
    year = int(match.group("year"))
    if len(match.group("year")) == 2:
        this_year = time.gmtime(time.time() if now is None else now).tm_year
        year += this_year - this_year % 100
        if year > this_year + 50:
            year -= 100
    month = _MONTH_NUMBERS[match.group("month")]
    day = int(match.group("day").lstrip(" "))
    hour, minute = int(match.group("hour")), int(match.group("minute"))
    second = int(match.group("second"))
    # Year 0000 fits the grammar but not the calendar functions (which start at year 1).
    if year < 1:
        return None
    if not (1 <= day <= calendar.monthrange(year, month)[1]
            and hour <= 23 and minute <= 59 and second <= 60):
        return None
    return calendar.timegm((year, month, day, hour, minute, second))


def format_clf_time(seconds: float) -> str:
    """``seconds`` since the epoch as a Common Log Format time: ``10/Oct/2000:13:55:36 +0000``."""
    t = time.gmtime(seconds)
    return (f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


#: The current second as an IMF-fixdate, for the Date field.
http_date_now = SecondText(_imf_fixdate).now  # not through the cache kept for file dates
#: The current second as a Common Log Format time, for access log lines.
clf_time_now = SecondText(format_clf_time).now
