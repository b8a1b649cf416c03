"""QR codes of Nex's addresses, drawn by segno (pure Python) when it is installed.

segno is optional (``pip install segno``, or ``pip install 'nex[qr]'``); without it each place
that would show a code says in one line how to get one.  Nex never encodes QR codes itself.
"""

from __future__ import annotations

import io
from typing import Any, Optional

#: What Nex says where a QR code would be, when segno is not installed.
INSTALL_HINT = "For a QR code of this address, install segno: pip install segno"


def _code(text: str) -> Optional[Any]:
    """segno's QR code of ``text``, None without segno."""
    try:
        import segno
    except ImportError:
        return None
    return segno.make(text, error="m", micro=False)


def terminal(text: str) -> str:
    """The QR code of ``text`` as lines of block characters for a terminal (two rows of
    modules per line), or :data:`INSTALL_HINT` without segno."""
    code = _code(text)
    if code is None:
        return INSTALL_HINT
    out = io.StringIO()
    code.terminal(out=out, compact=True)
    return out.getvalue().rstrip("\n")


def svg(text: str) -> Optional[bytes]:
    """The QR code of ``text`` as an SVG image, None without segno."""
    code = _code(text)
    if code is None:
        return None
    out = io.BytesIO()
    code.save(out, kind="svg", scale=6, border=2, xmldecl=False, light="#fff")
    return out.getvalue()
