"""The listing handler: a folder without an index file as an HTML table.

Every name is HTML-escaped and every link percent-encoded with nothing left as is, so a file
called ``<script>``, ``a"b``, ``#1`` or ``x:y`` is shown and linked as itself and nothing
else.  Links are relative to the folder's URL, which the resolver guarantees ends in ``/``.
The page comes from the ``dir.html`` template with the variables ``PATH`` (the folder's
decoded URL path), ``ROWS`` (the table rows, raw HTML), ``SUMMARY`` (``"2 folders, 3
files"``), ``UPLOAD_FORM`` (raw HTML, empty unless uploads are on), ``SIGNATURE`` and
``SERVER_SOFTWARE``.
"""

from __future__ import annotations

import html
import mimetypes
import os
import stat
import time
from typing import List, Tuple
from urllib.parse import quote

from nex import SERVER_SOFTWARE
from nex.errors import HTTPError
from nex.request import Request
from nex.resolver import Target, hidden
from nex.response import Response
from nex.templates import TemplateSet

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")
# mimetypes reports compressed files as an encoding of the inner type (a .tar.gz is
# "application/x-tar" + gzip); a listing should say what the file itself is.
_ENCODING_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
                   "xz": "application/x-xz", "br": "application/x-brotli",
                   "compress": "application/x-compress"}

Entry = Tuple[str, bool, os.stat_result]


def render_listing(target: Target, request: Request, templates: TemplateSet, signature: str,
                   show_dotfiles: bool = False, upload_form: str = "") -> Response:
    """The ``200`` listing page of the folder ``target``.

    ``request`` is every handler's argument; a listing is the same for GET and HEAD.

    Names starting with ``.`` are left out unless ``show_dotfiles``; ``upload_form`` is the
    HTML of the upload form, put in the page as it is.  Entries that cannot be
    served — broken links, devices, sockets, names that are not UTF-8, entries that vanish
    while the folder is read — are left out too.  Raises ``HTTPError`` 403 when the folder
    cannot be read, 404 when it has gone.
    """
    entries = read_folder(target.fs_path, show_dotfiles)
    rows = [] if target.url_path == "/" else [_PARENT_ROW]
    rows.extend(_row(name, is_dir, st) for name, is_dir, st in entries)
    folders = sum(1 for _, is_dir, _ in entries if is_dir)
    values = {
        "PATH": target.url_path,
        "SUMMARY": f"{_count(folders, 'folder')}, {_count(len(entries) - folders, 'file')}",
        "SIGNATURE": signature,
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
    }
    page = templates.listing.render(values, raw={"ROWS": "\n".join(rows),
                                                 "UPLOAD_FORM": upload_form})
    return Response(200, [("Content-Type", "text/html; charset=utf-8")],
                    body=(page.encode("utf-8"),))


def read_folder(fs_path: str, show_dotfiles: bool = False) -> List[Entry]:
    """``(name, is_folder, stat)`` for each servable entry: folders first, then files, each
    sorted by name without regard to case."""
    entries: List[Entry] = []
    try:
        with os.scandir(fs_path) as scan:
            for entry in scan:
                name = entry.name
                if hidden(name, show_dotfiles):
                    continue
                try:
                    name.encode("utf-8")
                    st = entry.stat()  # follows links: a broken one raises and is skipped
                except (OSError, UnicodeEncodeError):
                    continue
                if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                    entries.append((name, stat.S_ISDIR(st.st_mode), st))
    except FileNotFoundError:
        raise HTTPError(404, "The requested resource was not found.") from None
    except OSError:
        raise HTTPError(403, "This folder cannot be listed.") from None
    entries.sort(key=lambda e: (not e[1], e[0].casefold(), e[0]))
    return entries


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


def media_type(name: str) -> str:
    """The type shown for a file: its media type by extension, else ``"file"``."""
    # Only the extension is looked at: guess_type() parses its argument as a URL, and a
    # name such as "data:,x" would be taken for a data URL.
    media, encoding = mimetypes.guess_type("f" + os.path.splitext(name)[1].lower())
    if encoding:
        return _ENCODING_TYPES.get(encoding, "file")
    return media or "file"


def _row(name: str, is_dir: bool, st: os.stat_result) -> str:
    """One table row; every value escaped here, as the row goes into the page raw."""
    href = quote(name, safe="") + ("/" if is_dir else "")
    shown = name + ("/" if is_dir else "")
    if is_dir:
        size = '<td class="size">&#8212;</td>'
        kind = "folder"
    else:
        size = (f'<td class="size" title="{st.st_size} bytes">'
                f'{html.escape(human_size(st.st_size))}</td>')
        kind = media_type(name)
    return (f'<tr><td class="name"><a href="{html.escape(href)}">{html.escape(shown)}</a></td>'
            f"{size}{_mtime_cell(st.st_mtime)}"
            f'<td class="type">{html.escape(kind)}</td></tr>')


def _mtime_cell(mtime: float) -> str:
    """The modification time in UTC, ``2026-11-24 01:30``, machine-readable in ``datetime``."""
    try:
        moment = time.gmtime(mtime)
    except (OverflowError, OSError, ValueError):
        return '<td class="mtime"></td>'
    return (f'<td class="mtime"><time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)}">'
            f'{time.strftime("%Y-%m-%d %H:%M", moment)}</time></td>')


def _count(number: int, noun: str) -> str:
    """``"1 folder"``, ``"2 folders"``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


_PARENT_ROW = ('<tr class="parent"><td class="name"><a href="../">../</a></td>'
               '<td class="size"></td><td class="mtime"></td><td class="type">parent folder</td>'
               "</tr>")
