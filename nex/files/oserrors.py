"""The one table from a failed system call to the reply: which ``errno`` means what.

Every file handler (the resolver, the static handler, listings, uploads) turns an
``OSError`` into an ``HTTPError`` through :func:`reply_for`, and the listener reads
:data:`OUT_OF_RESOURCES` to tell a full descriptor table from a real fault.  An ``errno``
the table does not know is a fault of the server, not of the request: it goes up as it is.
"""

from __future__ import annotations

import errno
from typing import Optional

from nex.http.errors import HTTPError

#: Nothing servable here: missing, not a folder (or a folder where a file was meant), a
#: name too long, a link loop.
NOT_FOUND = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                       errno.ELOOP, errno.EINVAL})
#: The file system refuses access.
NO_ACCESS = frozenset({errno.EACCES, errno.EPERM})
#: Descriptors or kernel memory exhausted: lasts until something is released.
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: No room left for what is written.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def reply_for(error: OSError, *, writing: bool = False) -> Optional[HTTPError]:
    """The reply ``error`` stands for, or None for a fault that must go up unchanged.

    Missing is 404; refused access (and, when ``writing``, a read-only file system) 403;
    out of resources (or ``EAGAIN``) 503 with ``Retry-After``, since the client may simply
    try again; when ``writing``, a full disk 507, a file too large for the file system 413
    and a mount point renamed, replaced or removed, or a rename across mounts, 409.
    """
    code = error.errno
    if code in NOT_FOUND:
        return HTTPError(404, "The requested resource was not found.")
    if code in NO_ACCESS or (writing and code == errno.EROFS):
        return HTTPError(403, "This folder does not accept files." if writing
                         else "Access to the requested resource is denied.")
    if code in OUT_OF_RESOURCES or code == errno.EAGAIN:
        return HTTPError(503, "The server is short of resources; try again shortly.",
                         headers=[("Retry-After", "5")])
    if writing and code in FULL:
        return HTTPError(507, "There is no room left for the file.")
    if writing and code == errno.EFBIG:
        return HTTPError(413, "The file is larger than this folder's file system allows.")
    if writing and code == errno.EBUSY:
        return HTTPError(409, "The folder is in use by the system (a mount point).")
    if writing and code == errno.EXDEV:
        return HTTPError(409, "A rename cannot cross mounts (a mount point); copy, then "
                              "delete.")
    return None


def storage_error(error: OSError) -> Exception:
    """The reply for a folder that cannot take a file (:func:`reply_for` when writing);
    unexpected faults go up unchanged."""
    return reply_for(error, writing=True) or error
