"""Search: ``FOLDER/?search=TERM`` finds the names below a folder that hold ``TERM``.

The folders are walked breadth first, nearest hits first, judging each entry the way listings
do (:func:`nex.files.paths.servable_entry`: dotfiles, symlinks, names that cannot be asked
for), and each folder once however many links lead to it.  The walk is bounded: it looks at
most at ``max_search_entries`` entries and for at most ``search_timeout`` seconds, then
answers with what it found and says that it stopped, so a search costs at most that much
work whatever the tree holds.  Names match without regard to case (``str.casefold``).

Every hit, and every folder the walk enters, passes the access check a listing makes of its
entries (:func:`nex.files.listing.readable`: on the URL path and on the real path, a link's
target included), so a search shows nothing its folder's listing would hide.  The answer is
the listing page with the hits as its rows (each linked by its path from the folder), or JSON
like a listing's, each entry with its ``path``, for ``?format=json`` or an ``Accept`` that
prefers JSON.
"""

from __future__ import annotations

import collections
import json
import os
import stat
import time
from typing import TYPE_CHECKING, Deque, List, NamedTuple, Optional, Set, Tuple
from urllib.parse import parse_qsl

from nex import SERVER_SOFTWARE
from nex.files.listing import (Entry, breadcrumbs, entry_json, entry_row, folder_below,
                               listing_view, readable)
from nex.files.paths import Checker, Target, real_path, servable_entry
from nex.files.templates import TemplateSet
from nex.http.errors import HTTPError
from nex.http.request import Request
from nex.http.response import Response

if TYPE_CHECKING:
    from nex.process.config import Config

_COLUMNS = ('<th class="name">Name</th><th class="size">Size</th>'
            '<th class="mtime">Modified (UTC)</th><th class="type">Type</th>')
_VARY = ("Vary", "Accept")


class Hit(NamedTuple):
    """An entry found: ``prefix`` is the folder holding it, relative to the searched folder
    (decoded segments each ending in ``/``, "" for the folder itself)."""

    prefix: str
    entry: Entry


class Found(NamedTuple):
    """The hits of a search and whether the walk finished (False: it reached a bound)."""

    hits: List[Hit]
    complete: bool


def search_term(query: str) -> Optional[str]:
    """The ``search`` value of ``query`` (as sent, without ``?``), decoded; None when there
    is none or it is empty."""
    if "search=" not in query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "search":
            return value or None
    return None


def find(folder: Target, term: str, config: Config, may: Optional[Checker] = None) -> Found:
    """The entries below ``folder`` whose name holds ``term``, within the bounds."""
    wanted = term.casefold()
    deadline = time.monotonic() + config.search_timeout
    left = config.max_search_entries
    hits: List[Hit] = []
    seen: Set[Tuple[int, int]] = {(folder.stat.st_dev, folder.stat.st_ino)}
    pending: Deque[Tuple[Target, str]] = collections.deque([(folder, "")])
    while pending:
        current, prefix = pending.popleft()
        real_folder = real_path(current.fs_path, config).rstrip("/") + "/"
        try:
            scan = os.scandir(current.fs_path)
        except OSError:
            continue
        with scan:
            for item in scan:
                if left == 0 or time.monotonic() > deadline:
                    return Found(_ordered(hits), False)
                left -= 1
                _judge(current, real_folder, prefix, item.name, wanted, config, may, hits, seen,
                       pending)
    return Found(_ordered(hits), True)


def _judge(current: Target, real_folder: str, prefix: str, name: str, wanted: str,
           config: Config, may: Optional[Checker], hits: List[Hit],
           seen: Set[Tuple[int, int]], pending: Deque[Tuple[Target, str]]) -> None:
    """Take the entry ``name`` of ``current`` (whose real path is ``real_folder``) as a hit
    if it matches, and queue it as a folder to walk if it is one not walked yet; skip it if
    it may not be shown."""
    st = servable_entry(current, name, config)
    if st is None:
        return
    is_dir = stat.S_ISDIR(st.st_mode)
    link = os.path.islink(current.fs_path.rstrip("/") + "/" + name)
    if may is not None and not readable(may, current, real_folder, name, is_dir, link):
        return
    if wanted in name.casefold():
        hits.append(Hit(prefix, (name, is_dir, st)))
    if is_dir and (st.st_dev, st.st_ino) not in seen:
        seen.add((st.st_dev, st.st_ino))
        pending.append((folder_below(current, name, st, link), prefix + name + "/"))


def _ordered(hits: List[Hit]) -> List[Hit]:
    """``hits`` nearest first, then by path without regard to case."""
    return sorted(hits, key=lambda hit: (hit.prefix.count("/"), hit.prefix.casefold(),
                                         hit.entry[0].casefold(), hit.entry[0]))


def search_folder(folder: Target, request: Request, term: str, templates: TemplateSet,
                  signature: str, config: Config, may: Optional[Checker] = None) -> Response:
    """The ``200`` answer to ``FOLDER/?search=TERM``: the hits as a listing page or JSON.

    Raises ``HTTPError`` 404 when search is off (``max_search_entries = 0``).
    """
    if config.max_search_entries == 0:
        raise HTTPError(404, "Search is off here (max_search_entries = 0).")
    found = find(folder, term, config, may)
    if listing_view(request).json:
        body = json.dumps({"search": term, "complete": found.complete,
                           "hits": [entry_json(hit.entry, config, hit.prefix)
                                    for hit in found.hits]},
                          ensure_ascii=False, separators=(",", ":"))
        return Response(200, [("Content-Type", "application/json"), _VARY],
                        body=(body.encode("utf-8"),))
    count = len(found.hits)
    summary = f"{count} {'match' if count == 1 else 'matches'} for \u201c{term}\u201d below"
    if not found.complete:
        summary += (f"; the search stopped after {config.max_search_entries} entries or"
                    f" {config.search_timeout:g} s, so there may be more: narrow it down")
    values = {"PATH": folder.url_path, "SUMMARY": summary, "SEARCH": term,
              "SIGNATURE": signature, "SERVER_SOFTWARE": SERVER_SOFTWARE}
    raw = {"ROWS": "\n".join(entry_row(hit.entry, config, hit.prefix) for hit in found.hits),
           "BREADCRUMBS": breadcrumbs(folder.url_path), "COLUMNS": _COLUMNS,
           "DOWNLOAD": "", "UPLOAD_FORM": ""}
    page = templates.listing.render(values, raw=raw)
    return Response(200, [("Content-Type", "text/html; charset=utf-8"), _VARY],
                    body=(page.encode("utf-8"),))
