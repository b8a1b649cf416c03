"""The one exception every stage raises to ask for a non-content reply.

A stage that cannot go on (a malformed request, a missing file, a refused host) raises
:class:`HTTPError` with the status it wants sent.  The dispatcher renders every such page
(``Dispatcher.error_response``) and the connection writes it through the one writer, so
every error and redirect looks and is escaped alike.  :func:`protocol_error` is the error for
a message that breaks the protocol.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Optional, Sequence, Tuple

HeaderList = Sequence[Tuple[str, str]]

# RFC 9110 renamed a few reason phrases; older Pythons still carry the RFC 7231 ones.
_RFC9110_REASONS = {413: "Content Too Large", 416: "Range Not Satisfiable",
                    422: "Unprocessable Content"}
#: The interim status of draft-ietf-httpbis-resumable-upload (§4.1), which HTTPStatus lacks.
_DRAFT_REASONS = {104: "Upload Resumption Supported"}


#: The RFC 9110 reason phrase of each status Nex knows.
REASON_PHRASES = {status.value: status.phrase for status in HTTPStatus}
REASON_PHRASES.update(_RFC9110_REASONS)
REASON_PHRASES.update(_DRAFT_REASONS)


def reason_phrase(status: int) -> str:
    """The RFC 9110 reason phrase for ``status``."""
    return REASON_PHRASES[status]


def size_limit(setting: str, size: int) -> str:
    """``setting = SIZE`` as settings.conf spells the size (``max_upload_size = 100M``), for
    the detail of a refusal that a setting's limit caused, so the client learns what to raise."""
    for unit, factor in (("G", 1024 ** 3), ("M", 1024 ** 2), ("K", 1024)):
        if size and size % factor == 0:
            return f"{setting} = {size // factor}{unit}"
    return f"{setting} = {size}"


class HTTPError(Exception):
    """A reply other than content: ``status`` plus a human ``detail`` for the page.

    ``headers`` are extra response headers (``Allow``, ``Location``, ``Retry-After``,
    ``Content-Range``).  ``close`` asks the connection to close after the reply, which the
    connection loop also does on its own for statuses that leave the framing in doubt.
    The detail is shown to the client, so it never carries internals such as paths on disk.
    ``user`` is the user who logged in for the request refused (None for none), for the log;
    ``refusal`` a short token naming which of Nex's own rules refused it (``blacklist``,
    ``port``, ``auth``...; None when no rule did), for the log too; ``failure`` a short
    token naming what failed beyond Nex for a ``502`` or ``504`` (``refused``,
    ``dns_timeout``...; see :mod:`nex.proxy.figures`), for the metrics.
    """

    def __init__(self, status: int, detail: str = "", *, headers: HeaderList = (),
                 close: bool = False, refusal: Optional[str] = None,
                 failure: Optional[str] = None) -> None:
        # Raised for every 404 and redirect: set directly, the message made only if shown.
        self.status = status
        self.reason = reason = REASON_PHRASES[status]
        self.detail = detail or reason
        self.headers = tuple(headers)
        self.close = close
        self.user: Optional[str] = None
        self.refusal = refusal
        self.failure = failure

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.detail}"


def protocol_error(detail: str, status: int = 400) -> HTTPError:
    """The error for a message that breaks the protocol (``status`` 400 unless given).

    It asks the connection to close: once a message is refused as malformed, nothing says
    where it ends, so the bytes after it cannot be trusted to start the next one.
    """
    return HTTPError(status, detail, close=True)
