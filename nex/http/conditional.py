"""Validators and preconditions: ETag, Last-Modified and the If-* fields (RFC 9110 §8.8, §13).

The static handler computes a representation's validators once and asks this module whether
the request's preconditions hold.  Every field is parsed with its exact grammar; a malformed
date is ignored, a malformed entity-tag list counts as "no tag matches".
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

from nex.http.dates import parse_http_date
from nex.http.errors import HTTPError
from nex.http.grammar import ENTITY_TAG, parse_list
from nex.http.request import Headers

#: ``parse_etag_list`` result for ``*``.
ANY = "*"
EntityTags = Union[str, List[Tuple[bool, str]]]


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
    value = value.strip(" \t")
    if value == "*":
        return ANY
    elements = parse_list(value, ENTITY_TAG)
    if elements is None:
        return None
    return [(match.group("weak") is not None, match.group("tag")) for match in elements]


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
        match = ENTITY_TAG.fullmatch(value)
        return match is not None and match.group("weak") is None and match.group("tag") == etag
    date = parse_http_date(value, now)
    return date is not None and date == last_modified and now >= last_modified + 1
