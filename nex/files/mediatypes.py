"""Media types: the one table that says what type a file is sent as.

A file's type follows from its extension: ``[mime]`` settings first, then Nex's own table
(:mod:`nex.files.typetable`, the same on every Python version and host), else
``application/octet-stream``.  The static handler sends it as Content-Type and the listing
shows it, so both always agree.
"""

from __future__ import annotations

import functools
from typing import Mapping, Tuple

from nex.files.typetable import MEDIA_TYPES

#: The type of a file whose extension nobody names.
DEFAULT_TYPE = "application/octet-stream"

_SCRIPT_TYPES = frozenset({"text/javascript", "application/javascript",
                           "application/x-javascript", "application/ecmascript",
                           "application/json"})
_XML_TYPES = frozenset({"application/xml", "text/xml"})


def file_extension(name: str) -> str:
    """The lower-case extension of ``name``'s last component, as ``os.path.splitext`` finds it.

    ``""`` when there is none; leading dots (``.profile``) start no extension.
    """
    stem = name.rpartition("/")[2].lstrip(".")
    dot = stem.rfind(".")
    return stem[dot:].lower() if dot > 0 else ""


def media_type(extension: str, overrides: Mapping[str, str]) -> str:
    """The media type for a lower-case extension like ``".css"``, as the table names it.

    ``overrides`` (the ``[mime]`` settings, keys lower-case) win over Nex's table.
    """
    return overrides.get(extension) or MEDIA_TYPES.get(extension) or DEFAULT_TYPE


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
