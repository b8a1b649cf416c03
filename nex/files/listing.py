"""The listing handler: a folder without an index file as an HTML page or as JSON.

Both forms come from the same entries, in the same order: exactly the entries a GET of their
links would serve and the client may read (:func:`read_folder`).  JSON is sent for
``?format=json``, or when the request's ``Accept`` ranks ``application/json`` above
``text/html`` (:func:`prefers_json`); ``?format=html`` asks for the page whatever ``Accept``
says.  Either way the response carries ``Vary: Accept``.

Every name is HTML-escaped, with control and format characters (bidi controls, zero-width
characters) shown as ``\\uXXXX`` so that no name passes for another, and every link
percent-encoded with nothing left as is, so a file called ``<script>``, ``a"b``, ``#1`` or
``x:y`` is shown and linked as itself and nothing else.  Links are relative to the folder's URL,
which the resolver guarantees ends in ``/``, so a listing works unchanged behind a proxy that
serves Nex under a path prefix.  A file's type is the media type a GET of it is sent with
(:mod:`nex.files.mediatypes`, ``[mime]`` settings included).

Order: ``?sort=name|size|time`` and ``?order=asc|desc`` (default: name, ascending); folders
always come first.  A value Nex does not know is ignored and its default used, so an old or
mistyped link still shows the folder.  By size, folders (which have none) keep name order.

A rendered listing is kept (:class:`ListingCache`) and reused while its folder is unchanged:
an entry added, removed or renamed shows at once, a file changed in place (its size or time)
within :data:`LISTING_MAX_AGE`, one second.

The page comes from the ``dir.html`` template.  Its variables: ``PATH`` (the folder's decoded
URL path), ``BREADCRUMBS`` (a link for each segment of the path, raw HTML), ``COLUMNS`` (the
table's header cells with their sorting links, raw HTML), ``ROWS`` (the table rows, raw
HTML), ``SUMMARY`` (``"2 folders, 3 files"``), ``SORT`` and ``ORDER`` (the order shown,
e.g. ``size`` and ``desc``), ``DOWNLOAD`` (a link to the folder as a zip when folder
downloads are on, else empty; raw HTML), ``UPLOAD_FORM`` (the upload form when uploads
are on, else empty; raw HTML), ``SIGNATURE`` and ``SERVER_SOFTWARE``.  A template
uses the variables it wants; a customised ``dir.html`` written before some of them existed
keeps working.
"""

from __future__ import annotations

import html
import json
import os
import stat
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qsl, quote

from nex import SERVER_SOFTWARE
from nex.http.errors import HTTPError
from nex.files.filecache import FolderIdentity, folder_identity, settled
from nex.files.oserrors import reply_for
from nex.files.mediatypes import file_extension, media_type
from nex.http.negotiation import prefers
from nex.http.request import Request
from nex.files.paths import Checker, Target, real_path, servable_entry, shown_name
from nex.http.response import Response
from nex.files.templates import TemplateSet

if TYPE_CHECKING:
    from nex.process.config import Config

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")
#: The orders a listing can be shown in; the first is the default.
SORT_KEYS = ("name", "size", "time")
# What a column's header link asks for when the column is not the current order: names
# A to Z, the largest and the newest first.
_FIRST_ORDER = {"name": "asc", "size": "desc", "time": "desc"}
# (sort key, cell class, label) of each sortable column, in table order.
_COLUMNS = (("name", "name", "Name"), ("size", "size", "Size"),
            ("time", "mtime", "Modified (UTC)"))
_HTML_TYPE = "text/html; charset=utf-8"
_JSON_TYPE = "application/json"
_VARY = ("Vary", "Accept")

Entry = Tuple[str, bool, os.stat_result]


class ListingView(NamedTuple):
    """How the request asks to see a folder: ``sort`` (one of :data:`SORT_KEYS`),
    ``descending``, and ``json`` (the form to send)."""

    sort: str
    descending: bool
    json: bool


#: The views of a listing asked for without a query.
_PAGE_VIEW = ListingView(SORT_KEYS[0], False, False)
_JSON_VIEW = ListingView(SORT_KEYS[0], False, True)


def query_values(query: str) -> Dict[str, str]:
    """The first value of each name in ``query`` (as sent, without ``?``), decoded."""
    values: Dict[str, str] = {}
    if not query:  # most listings are asked for without one
        return values
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(name, value)
    return values


def listing_view(request: Request) -> ListingView:
    """The :class:`ListingView` that ``request``'s query and ``Accept`` ask for.

    Unknown ``sort``, ``order`` and ``format`` values are ignored (the default is used).
    """
    if not request.query:  # the default order, in the form Accept asks for
        return _JSON_VIEW if prefers_json(request.headers.get("Accept")) else _PAGE_VIEW
    values = query_values(request.query)
    sort = values.get("sort")
    order = values.get("order")
    form = values.get("format")
    if form in ("json", "html"):
        wants_json = form == "json"
    else:
        wants_json = prefers_json(request.headers.get("Accept"))
    return ListingView(sort if sort in SORT_KEYS else SORT_KEYS[0], order == "desc",
                       wants_json)


def prefers_json(accept: Optional[str]) -> bool:
    """Whether ``Accept: accept`` ranks ``application/json`` above ``text/html``
    (:func:`nex.http.negotiation.prefers`): JSON is then sent, else the page."""
    return prefers(accept, "application/json", "text/html")


class _Rendered(NamedTuple):
    """A rendered listing and what it was rendered from."""

    folder: FolderIdentity
    made: float
    #: Held so that their ids, part of the key, are not reused while the entry lives.
    config: Config
    templates: TemplateSet
    content_type: str
    body: bytes


class ListingCache:
    """Rendered listings, so that a folder asked for again is not read and rendered again.

    An entry is keyed by the folder's path and URL path, the view (order, HTML or JSON) and
    everything else the page is made from (settings, templates, signature, upload form).
    It is used only while both hold:

    * the folder's identity (:func:`nex.files.filecache.folder_identity`, from the ``stat`` the
      resolver takes on every request) is the one it was rendered with: an entry added,
      removed or renamed shows at once.  A folder that changed in the last two seconds
      (:data:`nex.files.filecache.SETTLED_NS`) is not cached at all, since a second change
      within its timestamps' granularity could leave its identity as it was;
    * it is younger than ``max_age`` seconds (:data:`LISTING_MAX_AGE`, one second): a file
      changed in place (its size, time, type, or a link's target) leaves its folder's
      identity alone, and shows once the entry has expired.

    At most ``max_bytes`` of pages are kept (larger ones are not cached); past that the
    cache starts over.  Threads that miss the same entry at once render it once: they
    share one of a fixed set of locks, picked by the key.  Every worker thread shares one
    cache; a look is one dictionary read and a lock guards every change of its table, so
    it is safe without the GIL.
    """

    def __init__(self, max_age: float = 1.0, max_bytes: int = 8 * 1024 * 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age
        self._max_bytes = max_bytes
        self._clock = clock
        self._entries: Dict[Tuple, _Rendered] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._render_locks = tuple(threading.Lock() for _ in range(_RENDER_LOCKS))

    def get(self, key: Tuple, folder: FolderIdentity, config: Config,
            templates: TemplateSet) -> Optional[_Rendered]:
        """The entry for ``key`` if it is still valid for a folder now at ``folder``."""
        entry = self._entries.get(key)
        if (entry is not None and entry.folder == folder and entry.config is config
                and entry.templates is templates
                and self._clock() - entry.made < self._max_age):
            return entry
        return None

    def render_lock(self, key: Tuple) -> threading.Lock:
        """The lock that threads rendering ``key`` share."""
        return self._render_locks[hash(key) % _RENDER_LOCKS]

    def store(self, key: Tuple, folder: FolderIdentity, made: float, config: Config,
              templates: TemplateSet, content_type: str, body: bytes) -> None:
        """Keep the listing ``body`` for ``key``, rendered at ``made`` (by :meth:`now`)
        from a folder at ``folder``, unless the folder has not settled or it is too large."""
        if len(body) > self._max_bytes or not settled(folder):
            return
        entry = _Rendered(folder, made, config, templates, content_type, body)
        with self._lock:
            replaced = self._entries.pop(key, None)
            if replaced is not None:
                self._bytes -= len(replaced.body)
            if self._bytes + len(body) > self._max_bytes:
                self._entries.clear()
                self._bytes = 0
            self._entries[key] = entry
            self._bytes += len(body)

    def now(self) -> float:
        """The time on the clock entries' ages are measured with."""
        return self._clock()


#: How old a cached listing may be, in seconds, before it is read and rendered again.
LISTING_MAX_AGE = 1.0
_RENDER_LOCKS = 64
#: The listings every worker thread shares.
LISTINGS = ListingCache(LISTING_MAX_AGE)


def render_listing(target: Target, request: Request, templates: TemplateSet, signature: str,
                   config: Config, upload_form: str = "",
                   cache: Optional[ListingCache] = LISTINGS, may: Optional[Checker] = None,
                   viewer: Optional[str] = None) -> Response:
    """The ``200`` listing of the folder ``target``, as HTML or JSON (see the module).

    ``request`` is every handler's argument; a listing is the same for GET and HEAD.
    ``config`` gives the serving rules the entries are judged by (dotfiles, symlinks, the
    root), the ``[mime]`` types and whether folder downloads are offered; ``upload_form``
    is the HTML of the upload form, put in the page as it is.  Raises ``HTTPError`` 403 when
    the folder cannot be read, 404 when it has gone.  A listing rendered less than a second
    ago for a folder that has not changed since comes from ``cache`` (see
    :class:`ListingCache`; None renders every time).  ``may`` is the access checker of
    ``viewer`` (the user, None: anonymous): entries it does not let be read are left out,
    and listings are cached per viewer.
    """
    view = listing_view(request)
    if cache is None:
        content_type, body = _render(target, view, templates, signature, config, upload_form,
                                     may)
        return Response(200, [("Content-Type", content_type), _VARY], body=(body,))
    folder = folder_identity(target.stat)
    key = (target.fs_path, target.url_path, view, id(config), id(templates), signature,
           upload_form, viewer)
    entry = cache.get(key, folder, config, templates)
    if entry is None:
        with cache.render_lock(key):
            entry = cache.get(key, folder, config, templates)  # another thread's, meanwhile
            if entry is None:
                made = cache.now()
                content_type, body = _render(target, view, templates, signature, config,
                                             upload_form, may)
                cache.store(key, folder, made, config, templates, content_type, body)
                return Response(200, [("Content-Type", content_type), _VARY], body=(body,))
    return Response(200, [("Content-Type", entry.content_type), _VARY], body=(entry.body,))


def _render(target: Target, view: ListingView, templates: TemplateSet, signature: str,
            config: Config, upload_form: str,
            may: Optional[Checker] = None) -> Tuple[str, bytes]:
    """``(Content-Type, body)`` of the listing of ``target`` shown as ``view``."""
    entries = sort_entries(read_folder(target, config, may), view.sort, view.descending)
    if view.json:
        body = json.dumps([entry_json(entry, config) for entry in entries],
                          ensure_ascii=False, separators=(",", ":"))
        return _JSON_TYPE, body.encode("utf-8")
    rows = [] if target.url_path == "/" else [_PARENT_ROW]
    rows.extend(entry_row(entry, config) for entry in entries)
    folders = sum(1 for _, is_dir, _ in entries if is_dir)
    values = {
        "PATH": shown_name(target.url_path),
        "SUMMARY": f"{_count(folders, 'folder')}, {_count(len(entries) - folders, 'file')}",
        "SORT": view.sort,
        "ORDER": "desc" if view.descending else "asc",
        "SIGNATURE": signature,
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
    }
    raw = {
        "ROWS": "\n".join(rows),
        "BREADCRUMBS": breadcrumbs(target.url_path),
        "COLUMNS": _column_headers(view),
        "DOWNLOAD": _DOWNLOAD_LINK if config.zip_download else "",
        "UPLOAD_FORM": upload_form,
    }
    page = templates.listing.render(values, raw=raw)
    return _HTML_TYPE, page.encode("utf-8")


def read_folder(folder: Target, config: Config, may: Optional[Checker] = None) -> List[Entry]:
    """``(name, is_folder, stat)`` for each entry of ``folder`` that GET would serve under
    ``config`` and the access checker ``may`` lets be read (:func:`scan_folder`): folders
    first, then files, each sorted by name without regard to case.  Raises ``HTTPError``
    404 when the folder has gone, 403 when it cannot be read.
    """
    entries = list(scan_folder(folder, config, may))
    entries.sort(key=lambda e: entry_order(e[0], e[1]))
    return entries


def entry_order(name: str, is_folder: bool) -> Tuple[bool, str, str]:
    """The sort key that puts folders first, then names without regard to case."""
    return not is_folder, name.casefold(), name


def scan_folder(folder: Target, config: Config,
                may: Optional[Checker] = None) -> Iterator[Entry]:
    """``(name, is_folder, stat)`` for each entry of ``folder`` that GET would serve under
    ``config`` and ``may`` lets be read, in the order the file system gives them.

    Whether an entry is servable is the resolver's decision (:func:`servable_entry`): links
    the symlink policy refuses, broken links, dotfiles, devices, sockets, names that cannot
    be asked for and entries that vanish while the folder is read are all left out, and a
    link's entry shows what it leads to.  A link is judged by ``may`` where it leads, as a
    GET through it would be.  Raises ``HTTPError`` 404 when the folder has gone, 403 when
    it cannot be read.
    """
    real_folder = real_path(folder.fs_path, config).rstrip("/") + "/" if may else ""
    try:
        scan = os.scandir(folder.fs_path)
    except OSError as error:
        raise _listing_error(error) from None
    with scan:
        while True:
            try:
                entry = next(scan, None)
            except OSError as error:
                raise _listing_error(error) from None
            if entry is None:
                return
            st = servable_entry(folder, entry.name, config)
            if st is None:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if may is not None and not readable(may, folder, real_folder, entry.name, is_dir,
                                                entry.is_symlink()):
                continue
            yield entry.name, is_dir, st


def _listing_error(error: OSError) -> HTTPError:
    """The reply for a folder that cannot be read: gone (404), short of resources (503),
    or anything else that keeps it from being listed (403)."""
    reply = reply_for(error)
    if reply is not None and reply.status != 403:
        return reply
    return HTTPError(403, "This folder cannot be listed.")


def readable(may: Checker, folder: Target, real_folder: str, name: str, is_folder: bool,
             link: bool) -> bool:
    """Whether ``may`` lets the entry ``name`` of ``folder`` be read: judged on its URL
    path and on its real path, which for a ``link`` is where it leads (``real_folder`` is
    the folder's real path, ending in ``/``)."""
    real = os.path.realpath(real_folder + name) if link else real_folder + name
    return may("read", folder.url_path + name + ("/" if is_folder else ""), real)


def folder_below(folder: Target, name: str, st: os.stat_result, link: bool) -> Target:
    """The entry ``name`` of ``folder``, a folder with the stat ``st``, as a walk goes on into
    it: at its real path when it is a ``link``, as the resolver returns one, so that what
    lies below is judged where it really is (a link to a parent of a protected folder must
    not open that folder)."""
    fs_path = folder.fs_path.rstrip("/") + "/" + name
    return Target("directory", os.path.realpath(fs_path) if link else fs_path,
                  folder.url_path + name + "/", st)


def sort_entries(entries: List[Entry], sort: str, descending: bool) -> List[Entry]:
    """``entries`` (in :func:`read_folder`'s order) by ``sort``, folders still first.

    Ties keep name order; by size, folders keep name order whatever ``descending`` says.
    """
    folders = [entry for entry in entries if entry[1]]
    files = [entry for entry in entries if not entry[1]]
    if sort == "name":
        if descending:
            folders.reverse()
            files.reverse()
    elif sort == "size":
        files.sort(key=lambda e: e[2].st_size, reverse=descending)
    else:
        folders.sort(key=lambda e: e[2].st_mtime_ns, reverse=descending)
        files.sort(key=lambda e: e[2].st_mtime_ns, reverse=descending)
    return folders + files


def breadcrumbs(url_path: str) -> str:
    """A link for the root and for each segment of the folder ``url_path``, as HTML.

    ``/a/b/`` gives ``/`` linking to ``../../``, ``a`` to ``../`` and ``b`` to ``./``,
    each followed by ``/``: the text reads as the path.  Names are escaped (control and
    format characters shown as ``\\uXXXX``, :func:`shown_name`); the links are
    relative and hold no name, so nothing in them needs encoding.
    """
    segments = [segment for segment in url_path.split("/") if segment]
    crumbs = []
    for depth, segment in enumerate([""] + segments):
        up = len(segments) - depth
        current = ' aria-current="page"' if up == 0 else ""
        shown = f"{html.escape(shown_name(segment))}/" if segment else "/"
        crumbs.append(f'<a href="{"../" * up or "./"}"{current}>{shown}</a>')
    return "".join(crumbs)


def human_size(size: int) -> str:
    """``size`` bytes for people: ``"512 B"``, ``"1.5 KiB"``, ``"20.0 MiB"``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def _href(name: str, is_dir: bool) -> str:
    """The entry's link relative to its folder: the name percent-encoded whole."""
    return quote(name, safe="") + ("/" if is_dir else "")


def entry_json(entry: Entry, config: Config, prefix: str = "") -> Dict[str, object]:
    """One entry as JSON: ``name``, ``type`` (``"directory"`` or the media type), ``size``
    (bytes; null for a folder), ``mtime`` (ISO 8601 UTC, null when out of range), ``href``;
    for an entry in the folder ``prefix`` below (a search hit), also ``path``."""
    name, is_dir, st = entry
    fields: Dict[str, object] = {"path": prefix + name} if prefix else {}
    return {
        **fields,
        "name": name,
        "type": "directory" if is_dir else media_type(file_extension(name),
                                                      config.mime_types),
        "size": None if is_dir else st.st_size,
        "mtime": _iso_time(st.st_mtime),
        "href": quote(prefix) + _href(name, is_dir),
    }


def entry_row(entry: Entry, config: Config, prefix: str = "") -> str:
    """One table row; every value escaped here, as the row goes into the page raw.

    ``prefix`` is the folder below the listed one that holds the entry (a search hit), as
    decoded segments each ending in ``/``; the row shows and links the path from there.
    """
    name, is_dir, st = entry
    shown = prefix + name + ("/" if is_dir else "")
    if is_dir:
        size = '<td class="size">&#8212;</td>'
        kind = icon = "folder"
    else:
        size = (f'<td class="size" title="{st.st_size} bytes">'
                f'{html.escape(human_size(st.st_size))}</td>')
        kind = media_type(file_extension(name), config.mime_types)
        icon = file_kind(kind)
    return (f'<tr data-kind="{icon}"><td class="name">{_ICON.format(icon)}'
            f'<a href="{html.escape(quote(prefix) + _href(name, is_dir))}">'
            f"{html.escape(shown_name(shown))}</a></td>{size}{_mtime_cell(st.st_mtime)}"
            f'<td class="type">{html.escape(kind)}</td></tr>')


def file_kind(media: str) -> str:
    """What a file of the media type ``media`` is to the listing, which picks its icon and
    preview by it: image, video, audio, text, archive, pdf or file."""
    major = media.partition("/")[0]
    if major in ("image", "video", "audio", "text"):
        return major
    return _KINDS.get(media, "file")


def _column_headers(view: ListingView) -> str:
    """The header cells: each sortable column links to its order, the current one to the
    reverse of what is shown, and says how the table is sorted (``aria-sort``)."""
    cells = []
    for key, cell_class, label in _COLUMNS:
        if key == view.sort:
            order = "asc" if view.descending else "desc"
            state = "descending" if view.descending else "ascending"
            marker = "&#9660;" if view.descending else "&#9650;"
            cells.append(f'<th class="{cell_class}" aria-sort="{state}">'
                         f'<a href="?sort={key}&amp;order={order}" rel="nofollow">{label}</a> '
                         f'<span aria-hidden="true">{marker}</span></th>')
        else:
            cells.append(f'<th class="{cell_class}"><a href="?sort={key}&amp;'
                         f'order={_FIRST_ORDER[key]}" rel="nofollow">{label}</a></th>')
    cells.append('<th class="type">Type</th>')
    return "".join(cells)


def _iso_time(mtime: float) -> Optional[str]:
    """``mtime`` as ISO 8601 in UTC (``2026-11-24T01:30:00Z``), None when out of range."""
    moment = _utc(mtime)
    return None if moment is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)


def _mtime_cell(mtime: float) -> str:
    """The modification time in UTC, ``2026-11-24 01:30``, machine-readable in ``datetime``."""
    moment = _utc(mtime)
    if moment is None:
        return '<td class="mtime"></td>'
    return (f'<td class="mtime"><time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)}">'
            f'{time.strftime("%Y-%m-%d %H:%M", moment)}</time></td>')


def _utc(mtime: float) -> Optional[time.struct_time]:
    """``mtime`` broken down in UTC, None when the platform cannot represent it."""
    try:
        return time.gmtime(mtime)
    except (OverflowError, OSError, ValueError):
        return None


def _count(number: int, noun: str) -> str:
    """``"1 folder"``, ``"2 folders"``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


#: The kinds of files that are not told by their media type's major part.
_KINDS = {"application/json": "text", "application/xml": "text",
          "application/javascript": "text", "application/pdf": "pdf",
          "application/zip": "archive", "application/gzip": "archive",
          "application/x-tar": "archive", "application/x-7z-compressed": "archive",
          "application/x-bzip2": "archive", "application/x-xz": "archive"}
#: A row's icon: a symbol of the sprite in dir.html.
_ICON = '<svg class="icon" aria-hidden="true"><use href="#i-{}"></use></svg>'
_PARENT_ROW = ('<tr class="parent" data-kind="up"><td class="name">'
               + _ICON.format("up") + '<a href="../">../</a></td>'
               '<td class="size"></td><td class="mtime"></td><td class="type">parent folder</td>'
               "</tr>")
_DOWNLOAD_LINK = ('<a class="download" href="?download=zip" rel="nofollow" download>'
                  'Download as zip</a>')
