"""A client gone away: the errors that mean it, which are no fault of Nex's.

A client that resets the connection, or stops reading until a send times out, leaves
nobody to answer and nothing worth an error line.  The connection tells these from real
faults here, and a reset inside a request body becomes :class:`ClientGone`, which the
handlers treat as any refused body (an upload removes its temporary file).
"""

from __future__ import annotations

import errno
import ssl

from nex.http.errors import HTTPError

#: Errors that mean the client went away or stopped reading: nobody is left to tell.
_GONE_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN,
                          errno.ESHUTDOWN, errno.ETIMEDOUT})
#: The same as exceptions: a send that timed out, and a TLS client that closed the
#: connection, with or without its closure alert.
_GONE_TYPES = (TimeoutError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class ClientGone(HTTPError):
    """The client reset the connection inside a request body: no fault, and nobody to tell."""

    def __init__(self) -> None:
        super().__init__(400, "The client reset the connection inside the request body.",
                         close=True)


def client_gone(error: OSError) -> bool:
    """Whether a failed send or receive means the client went away or stopped reading,
    which is not worth a line in the error log."""
    return isinstance(error, _GONE_TYPES) or (
        not isinstance(error, ssl.SSLError) and error.errno in _GONE_ERRNOS)
