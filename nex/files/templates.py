"""The renderer: error pages and listings from HTML templates with ``{{-NAME-}}`` variables.

Templates are plain HTML files read once at start-up.  A variable is ``{{-NAME-}}`` with
NAME made of ``A-Z``, ``0-9`` and ``_``.  Values are HTML-escaped (quotes included, so a
value is safe inside an attribute too); only values the caller passes as ``raw`` — HTML it
built and escaped itself — go in as they are.  A variable the caller does not supply renders
as nothing, so a customised page may leave out or add variables without breaking a reply.

Pages share a layout through three directives, resolved when the files are loaded, so
rendering only ever fills in variables:

* ``{{-EXTENDS layout.html-}}``, first in a file, makes the file a page of that layout: the
  layout's text is rendered, with the page's blocks in place of the layout's.  A page holds
  nothing but blocks (and white space between them).  A layout may extend another layout.
* ``{{-BLOCK NAME-}}`` … ``{{-END NAME-}}`` marks a named block: in a layout, a part a page
  may replace (its text is the default); in a page, the replacement.  Blocks nest; a block
  inside a page's block is a new part that a page extending this one may replace in turn.

A layout is named by a bare file name (no ``/``, not starting with ``.``) and looked up
beside the file that extends it, then in the error pages folder, so the listing may share
the error pages' layout.  A newline right after a directive is dropped, so directives on
lines of their own leave no blank lines.  Anything wrong — a malformed directive, a block
left open or defined twice, text outside a page's blocks, a block its layout never shows, a
missing layout, layouts that extend each other in a loop — is a ``TemplateError`` naming the
file, raised at start-up.

Error pages get ``STATUS_CODE``, ``REASON``, ``DETAIL`` (empty when the error says no more
than its reason phrase), ``LOCATION`` (the redirect target, empty for other errors),
``SIGNATURE`` and ``SERVER_SOFTWARE``.
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
from typing import (Dict, FrozenSet, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple,
                    Union)

from nex import SERVER_SOFTWARE
from nex.http.errors import HeaderList, HTTPError
from nex.files.paths import shown_name

_VARIABLE = re.compile(r"\{\{-([A-Z0-9_]+)-\}\}")
_ERROR_PAGE = re.compile(r"([1-5][0-9][0-9])\.html")
#: The generic error page, used for every status without its own page.
FALLBACK_PAGE = "error.html"
#: The folder listing page, in the templates folder.
LISTING_PAGE = "dir.html"


class TemplateError(Exception):
    """A template file is missing, unreadable, not UTF-8, or its directives or layouts are
    wrong; the message is one line naming the file."""


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


# A directive is a keyword, one space and one argument; a keyword followed by white space
# is always read as a directive, so a malformed one is an error, never literal text.
_DIRECTIVE_START = re.compile(r"\{\{-(?:EXTENDS|BLOCK|END)\s")
_DIRECTIVE = re.compile(r"\{\{-(EXTENDS|BLOCK|END) ([^\s{}]+?)-\}\}(?:\r?\n)?")
_BLOCK_NAME = re.compile(r"[A-Z0-9_]+")
# A bare file name: no separator and no leading dot, so a layout stays in its folder.
_LAYOUT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class _Block(NamedTuple):
    """A named block: its text and the blocks nested in it, in order."""

    name: str
    body: Tuple[Union[str, "_Block"], ...]


class _Source(NamedTuple):
    """One template file as written, before its layout is applied."""

    path: str
    #: The file name its ``EXTENDS`` names; empty for a file that extends nothing.
    layout: str
    body: Tuple[Union[str, _Block], ...]
    #: Every block in the file, nested ones included, by name.
    blocks: Mapping[str, _Block]
    #: The names of the blocks not nested in another: what a page fills in its layout.
    filled: Tuple[str, ...]


def _parse(text: str, path: str) -> _Source:
    """``text`` (the file ``path``) split into text and blocks; ``TemplateError`` if malformed."""
    layout = ""
    position = 0
    opened: List[Tuple[str, List[Union[str, _Block]]]] = [("", [])]
    blocks: Dict[str, _Block] = {}
    filled: List[str] = []

    def fail(offset: int, problem: str) -> TemplateError:
        line = text.count("\n", 0, offset) + 1
        return TemplateError(f"template {path}, line {line}: {problem}")

    def add_text(end: int) -> None:
        piece = text[position:end]
        if layout and len(opened) == 1 and piece.strip():
            raise fail(position + len(piece) - len(piece.lstrip()),
                       f"text outside a block, which a page of {layout} never shows")
        opened[-1][1].append(piece)

    # An argument holds no "{", so no directive starts inside another.
    for start in _DIRECTIVE_START.finditer(text):
        add_text(start.start())
        directive = _DIRECTIVE.match(text, start.start())
        if directive is None:
            raise fail(start.start(), "malformed directive, expected {{-EXTENDS file.html-}}, "
                                      "{{-BLOCK NAME-}} or {{-END NAME-}}")
        keyword, argument = directive.groups()
        position = directive.end()
        if keyword == "EXTENDS":
            if start.start() != 0:
                raise fail(start.start(), "EXTENDS must come first in the file")
            if not _LAYOUT_NAME.fullmatch(argument):
                raise fail(start.start(), f"layout {argument!r} is not a file name in this "
                                          "folder")
            layout = argument
        elif not _BLOCK_NAME.fullmatch(argument):
            raise fail(start.start(), f"block name {argument!r} is not made of A-Z, 0-9 and _")
        elif keyword == "BLOCK":
            if argument in blocks or any(name == argument for name, _ in opened):
                raise fail(start.start(), f"block {argument} is defined twice")
            if len(opened) == 1:
                filled.append(argument)
            opened.append((argument, []))
        elif opened[-1][0] != argument:
            expected = f"END {opened[-1][0]}" if len(opened) > 1 else "no END"
            raise fail(start.start(), f"END {argument} where {expected} belongs")
        else:
            name, body = opened.pop()
            blocks[name] = _Block(name, tuple(body))
            opened[-1][1].append(blocks[name])
    add_text(len(text))
    if len(opened) > 1:
        raise TemplateError(f"template {path}: block {opened[-1][0]} has no END "
                            f"{opened[-1][0]}")
    return _Source(path, layout, tuple(opened[0][1]), blocks, tuple(filled))


class _Loader:
    """Reads template files, each once, and applies their layouts.

    ``layouts_dir`` is where a layout is looked for when it is not beside the file that
    extends it (the error pages folder).
    """

    def __init__(self, layouts_dir: str) -> None:
        self._layouts_dir = layouts_dir
        self._sources: Dict[str, _Source] = {}

    def load(self, path: str) -> Template:
        """The template in ``path`` with its layouts applied; ``TemplateError`` if that fails."""
        chain = [self._source(os.path.normpath(path))]
        while chain[-1].layout:
            layout_path = self._find_layout(chain[-1])
            if any(source.path == layout_path for source in chain):
                loop = " -> ".join([source.path for source in chain] + [layout_path])
                raise TemplateError(f"templates extend each other in a loop: {loop}")
            chain.append(self._source(layout_path))
        return Template(_apply_layouts(chain), path)

    def _find_layout(self, source: _Source) -> str:
        """The path of the layout ``source`` extends: beside it, else in the layouts folder."""
        folders = [os.path.dirname(source.path)]
        if os.path.normpath(self._layouts_dir) != os.path.normpath(folders[0]):
            folders.append(self._layouts_dir)
        for folder in folders:
            candidate = os.path.normpath(os.path.join(folder, source.layout))
            if os.path.exists(candidate):
                return candidate
        raise TemplateError(f"template {source.path} extends {source.layout}, which is not in "
                            f"{' or '.join(folders)}")

    def _source(self, path: str) -> _Source:
        """The parsed file ``path``, read on first use."""
        if path not in self._sources:
            self._sources[path] = _parse(_read_text(path), path)
        return self._sources[path]


def _read_text(path: str) -> str:
    """The text of the UTF-8 file ``path``; ``TemplateError`` naming it if that fails."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"template {path} is not UTF-8 (byte {exc.start})") from None


def _apply_layouts(chain: Sequence[_Source]) -> str:
    """The text of ``chain[0]`` laid out by ``chain[1:]`` (each the layout of the one before).

    The last layout's text is written out with every block replaced by the block of that
    name in the file nearest the page; blocks inside a replacement are replaced the same way.
    A name never recurs within itself: a block nested in a file's block comes from that file
    or a nearer one, and a file defines each name once.
    """
    nearest: Dict[str, _Block] = {}
    for source in chain:
        for name, block in source.blocks.items():
            nearest.setdefault(name, block)
    shown: Set[str] = set()
    out: List[str] = []
    pending = [iter(chain[-1].body)]
    while pending:
        node = next(pending[-1], None)
        if node is None:
            pending.pop()
        elif isinstance(node, str):
            out.append(node)
        else:
            shown.add(node.name)
            pending.append(iter(nearest[node.name].body))
    for source, layout in zip(chain, chain[1:]):
        for name in source.filled:
            if name not in shown:
                raise TemplateError(f"template {source.path}: block {name} is not shown by "
                                    f"its layout {layout.path}")
    return "".join(out)


#: Rendered error replies one template set remembers; past this many it starts over.
RENDERED_PAGES_LIMIT = 512


class TemplateSet:
    """The pages Nex renders: one per error status it has a file for, a fallback, a listing.

    Error replies, in each form, are rendered once per distinct set of values and
    remembered: a set of templates is loaded once and never changes (new templates make a
    new set), so a reply depends on its form and values alone.  Worker threads share the
    table; a look-up is one dictionary read, and storing (with the clearing that bounds it)
    happens under a lock.
    """

    def __init__(self, error_pages: Mapping[int, Template], fallback: Template,
                 listing: Template) -> None:
        self.error_pages: Dict[int, Template] = dict(error_pages)
        self.fallback = fallback
        #: The folder listing page (``dir.html``).
        self.listing = listing
        self._rendered: Dict[Tuple[str, int, str, str, HeaderList, str], bytes] = {}
        self._rendered_lock = threading.Lock()

    @classmethod
    def load(cls, error_pages_dir: str, templates_dir: str) -> "TemplateSet":
        """Read every ``NNN.html`` and ``error.html`` (required) from ``error_pages_dir`` and
        ``dir.html`` (required) from ``templates_dir``, each with its layouts applied (a
        layout not beside its page is looked for in ``error_pages_dir``).  Each file is read
        once.  Raises ``TemplateError``."""
        try:
            names = sorted(entry.name for entry in os.scandir(error_pages_dir))
        except OSError as exc:
            raise TemplateError(
                f"cannot read error pages folder {error_pages_dir}: {exc.strerror}") from None
        loader = _Loader(error_pages_dir)
        pages = {}
        for name in names:
            match = _ERROR_PAGE.fullmatch(name)
            if match:
                pages[int(match.group(1))] = loader.load(os.path.join(error_pages_dir, name))
        fallback = loader.load(os.path.join(error_pages_dir, FALLBACK_PAGE))
        listing = loader.load(os.path.join(templates_dir, LISTING_PAGE))
        return cls(pages, fallback, listing)

    def render_error_as(self, form: str, error: HTTPError, signature: str) -> bytes:
        """The body for ``error`` in the ``form`` :func:`nex.http.negotiation.error_form`
        chose: the page (``"html"``), a JSON object with ``status``, ``reason``, ``detail``
        and for a redirect ``location`` (``"json"``), or one line ``STATUS REASON: DETAIL``,
        where a redirect's detail is its target (``"text"``)."""
        # Keyed by the error's fields as they are: the Location is looked for only to render.
        key = (form, error.status, error.reason, error.detail, error.headers, signature)
        body = self._rendered.get(key)
        if body is not None:
            return body
        location = _location(error)
        # The detail may name a path the client sent: its disguising characters are shown
        # as escapes, as listings show names, so a terminal never runs its control
        # sequences nor shows a disguised name.
        detail = "" if error.detail == error.reason else shown_name(error.detail)
        if form == "html":
            template = self.error_pages.get(error.status, self.fallback)
            body = template.render({
                "STATUS_CODE": error.status,
                "REASON": error.reason,
                "DETAIL": detail,
                "LOCATION": location,
                "SIGNATURE": signature,
                "SERVER_SOFTWARE": SERVER_SOFTWARE,
            }).encode("utf-8")
        elif form == "json":
            fields = {"status": error.status, "reason": error.reason, "detail": detail}
            if location:
                fields["location"] = location
            body = json.dumps(fields).encode("utf-8") + b"\n"
        else:
            detail = location or detail
            line = f"{error.status} {error.reason}: {detail}" if detail else \
                f"{error.status} {error.reason}"
            body = line.encode("utf-8") + b"\n"
        with self._rendered_lock:
            if len(self._rendered) >= RENDERED_PAGES_LIMIT:
                self._rendered.clear()
            self._rendered[key] = body
        return body

    def render_error(self, error: HTTPError, signature: str) -> bytes:
        """The UTF-8 page for ``error``: its status's own page, else the fallback."""
        return self.render_error_as("html", error, signature)


def _location(error: HTTPError) -> str:
    """The ``Location`` of a redirect, else ""."""
    for name, value in error.headers:
        if name.lower() == "location":
            return value
    return ""
