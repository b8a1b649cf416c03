"""Media types: the one table that says what type a file is sent as.

A file's type follows from its extension: ``[mime]`` settings first, then Nex's own table
(the interpreter's built-in one, which never reads the host's ``/etc/mime.types``, with the
web's newer types on top), else ``application/octet-stream``.  The static handler sends
it as Content-Type and the listing shows it, so both always agree.
"""

from __future__ import annotations

import functools
import mimetypes
from typing import Dict, Mapping, Tuple

#: The type of a file whose extension nobody names.
DEFAULT_TYPE = "application/octet-stream"

# Types the stdlib's built-in table lacks or names differently across Python versions.
_WEB_TYPES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".cjs": "text/javascript",
    ".json": "application/json", ".map": "application/json",
    ".jsonld": "application/ld+json", ".webmanifest": "application/manifest+json",
    ".md": "text/markdown", ".wasm": "application/wasm",
    ".webp": "image/webp", ".avif": "image/avif", ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    ".gz": "application/gzip", ".bz2": "application/x-bzip2", ".xz": "application/x-xz",
    ".zst": "application/zstd",
    ".ogg": "audio/ogg", ".oga": "audio/ogg", ".ogv": "video/ogg", ".opus": "audio/ogg",
    ".weba": "audio/webm", ".webm": "video/webm", ".flac": "audio/flac",
    ".m4a": "audio/mp4", ".mkv": "video/x-matroska",
    ".pac": "application/x-ns-proxy-autoconfig",
}
_SCRIPT_TYPES = frozenset({"text/javascript", "application/javascript",
                           "application/x-javascript", "application/ecmascript",
                           "application/json"})
_XML_TYPES = frozenset({"application/xml", "text/xml"})


def _builtin_types() -> Dict[str, str]:
    # MimeTypes() starts from the interpreter's built-in table and reads no system files,
    # so the result does not depend on the host's /etc/mime.types.
    table = mimetypes.MimeTypes()
    types = dict(table.types_map[False])
    types.update(table.types_map[True])
    types.update(_WEB_TYPES)
    return types


_TYPES = _builtin_types()


def file_extension(name: str) -> str:
    """The lower-case extension of ``name``'s last component, as ``os.path.splitext`` finds it.

    ``""`` when there is none; leading dots (``.profile``) start no extension.
    """
    stem = name.rpartition("/")[2].lstrip(".")
    dot = stem.rfind(".")
    return stem[dot:].lower() if dot > 0 else ""


def media_type(extension: str, overrides: Mapping[str, str]) -> str:
    """The media type for a lower-case extension like ``".css"``, as the table names it.

    ``overrides`` (the ``[mime]`` settings, keys lower-case) win over the built-in table.
    """
    return overrides.get(extension) or _TYPES.get(extension) or DEFAULT_TYPE


@functools.lru_cache(maxsize=256)
def describe_type(media_type: str) -> Tuple[str, bool]:
    """``(Content-Type value, compressible)`` for a media type.

    ``; charset=utf-8`` is added to text, JavaScript and JSON types unless the type already
    has parameters; compressible means text, JavaScript, JSON or XML (SVG included).
    """
    essence = media_type.partition(";")[0].strip(" \t").lower()
    textual = (essence.startswith("text/") or essence in _SCRIPT_TYPES
               or essence.endswith("+json"))
    compressible = textual or essence in _XML_TYPES or essence.endswith("+xml")
    if textual and ";" not in media_type:
        media_type += "; charset=utf-8"
    return media_type, compressible


def content_type(extension: str, overrides: Mapping[str, str]) -> Tuple[str, bool]:
    """``(Content-Type value, compressible)`` for a lower-case extension like ``".css"``.

    The type is :func:`media_type`'s, described by :func:`describe_type`.
    """
    return describe_type(media_type(extension, overrides))
