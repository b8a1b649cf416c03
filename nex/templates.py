"""The renderer: error pages and listings from HTML templates with ``{{-NAME-}}`` variables.

Templates are plain HTML files read once at start-up.  A variable is ``{{-NAME-}}`` with
NAME made of ``A-Z``, ``0-9`` and ``_``.  Values are HTML-escaped (quotes included, so a
value is safe inside an attribute too); only values the caller passes as ``raw`` — HTML it
built and escaped itself — go in as they are.  A variable the caller does not supply renders
as nothing, so a customised page may leave out or add variables without breaking a reply.

Error pages get ``STATUS_CODE``, ``REASON``, ``DETAIL`` (empty when the error says no more
than its reason phrase), ``LOCATION`` (the redirect target, empty for other errors),
``SIGNATURE`` and ``SERVER_SOFTWARE``.
"""

from __future__ import annotations

import html
import os
import re
from typing import Dict, FrozenSet, List, Mapping, Optional, Tuple

from nex import SERVER_SOFTWARE
from nex.errors import HTTPError

_VARIABLE = re.compile(r"\{\{-([A-Z0-9_]+)-\}\}")
_ERROR_PAGE = re.compile(r"([1-5][0-9][0-9])\.html")
#: The generic error page, used for every status without its own page.
FALLBACK_PAGE = "error.html"
#: The folder listing page, in the templates folder.
LISTING_PAGE = "dir.html"


class TemplateError(Exception):
    """A template file is missing, unreadable or not UTF-8; the message names the file."""


class Template:
    """One template, split into literal text and variable names once, when it is loaded."""

    def __init__(self, text: str, name: str) -> None:
        self.name = name
        parts = _VARIABLE.split(text)
        # split() alternates literal, name, literal, ...: pair each name with the text before.
        self._pieces: Tuple[Tuple[str, str], ...] = tuple(zip(parts[0:-1:2], parts[1::2]))
        self._tail = parts[-1]
        #: The variable names the template uses.
        self.variables: FrozenSet[str] = frozenset(parts[1::2])

    def render(self, values: Mapping[str, object],
               raw: Optional[Mapping[str, str]] = None) -> str:
        """The template with ``values`` HTML-escaped and ``raw`` inserted as is.

        A name in both takes the raw value; a name in neither renders as nothing.
        """
        raw = raw or {}
        out: List[str] = []
        for literal, name in self._pieces:
            out.append(literal)
            if name in raw:
                out.append(raw[name])
            elif name in values:
                out.append(html.escape(str(values[name]), quote=True))
        out.append(self._tail)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.name!r})"


def load_template(path: str) -> Template:
    """The template in the UTF-8 file ``path``; ``TemplateError`` naming it if that fails."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"template {path} is not UTF-8 (byte {exc.start})") from None
    return Template(text, path)


class TemplateSet:
    """The pages Nex renders: one per error status it has a file for, a fallback, a listing."""

    def __init__(self, error_pages: Mapping[int, Template], fallback: Template,
                 listing: Template) -> None:
        self.error_pages: Dict[int, Template] = dict(error_pages)
        self.fallback = fallback
        #: The folder listing page (``dir.html``).
        self.listing = listing

    @classmethod
    def load(cls, error_pages_dir: str, templates_dir: str) -> "TemplateSet":
        """Read every ``NNN.html`` and ``error.html`` (required) from ``error_pages_dir`` and
        ``dir.html`` (required) from ``templates_dir``.  Raises ``TemplateError``."""
        try:
            names = sorted(entry.name for entry in os.scandir(error_pages_dir))
        except OSError as exc:
            raise TemplateError(
                f"cannot read error pages folder {error_pages_dir}: {exc.strerror}") from None
        pages = {}
        for name in names:
            match = _ERROR_PAGE.fullmatch(name)
            if match:
                pages[int(match.group(1))] = load_template(os.path.join(error_pages_dir, name))
        fallback = load_template(os.path.join(error_pages_dir, FALLBACK_PAGE))
        listing = load_template(os.path.join(templates_dir, LISTING_PAGE))
        return cls(pages, fallback, listing)

    def render_error(self, error: HTTPError, signature: str) -> bytes:
        """The UTF-8 page for ``error``: its status's own page, else the fallback."""
        template = self.error_pages.get(error.status, self.fallback)
        location = next((value for name, value in error.headers
                         if name.lower() == "location"), "")
        values = {
            "STATUS_CODE": error.status,
            "REASON": error.reason,
            "DETAIL": "" if error.detail == error.reason else error.detail,
            "LOCATION": location,
            "SIGNATURE": signature,
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
        }
        return template.render(values).encode("utf-8")
