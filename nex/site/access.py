"""The access policy: who may read, list, zip and write which path.

One decision, :meth:`AccessPolicy.may`, asked by every handler for every entry it touches:
the file of a GET, HEAD or range request, each entry of an HTML or JSON listing, each entry
of a zip while the folder is walked, the upload target, and what a request reaches only
indirectly (a precompressed sidecar, an index file, a symlink's target).

The rules, for a user (the name a login proved) or None (anonymous):

* ``read`` (a file), ``list`` (a folder's listing) and ``archive`` (a folder's zip): anyone,
  except under an ``[auth] protect`` prefix, where only a logged-in user may;
* ``write`` (an upload): only with ``[files] upload`` on, and under a protected prefix only
  for a logged-in user.

A path is under a prefix when its decoded URL path is, **or** its real path (symlinks
resolved) is, taken relative to the document root.  So ``public/link -> ../private`` does
not open ``/private/`` to anonymous readers or writers: the real path decides as well as the
name it was asked by.  A real path outside the root (``symlinks = always``) is judged by its
URL path alone.  A protected prefix that is itself a link (``/docs/`` with ``docs ->
private``) protects where it leads too (:meth:`nex.site.login.ProtectedPaths.linked`).

Handlers in :mod:`nex.files` never import this module: :mod:`nex.site.routing` hands each one
a checker with the user already bound (:meth:`AccessPolicy.checker`), a plain callable
``may(action, url_path, real_path) -> bool``.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Tuple

from nex.site.login import ProtectedPaths

#: The actions a handler asks about.
ACTIONS = frozenset({"read", "list", "archive", "write"})

#: A checker with the user bound: ``may(action, url_path, real_path) -> bool``.
Checker = Callable[[str, str, str], bool]


class AccessPolicy:
    """The one access decision (see the module).

    ``protected`` holds the ``[auth] protect`` prefixes (None: no login is configured, so
    nothing is protected); ``real_root`` is the document root's real path; ``upload`` says
    whether uploads are on.
    """

    def __init__(self, protected: Optional[ProtectedPaths], real_root: str,
                 upload: bool) -> None:
        self._protected = protected
        self._linked = None if protected is None else protected.linked(real_root)
        self._root_prefix = real_root.rstrip("/") + "/"
        self._upload = upload

    def may(self, user: Optional[str], action: str, url_path: str, real_path: str) -> bool:
        """Whether ``user`` (None: anonymous) may ``action`` the entry that the decoded,
        normalised ``url_path`` names and that lies at ``real_path`` on disk (symlinks
        resolved).  ``ValueError`` for an action not in :data:`ACTIONS`."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if action == "write" and not self._upload:
            return False
        if self.opens_everything_to(user):
            return True
        return not self.protects(url_path, real_path)

    def opens_everything_to(self, user: Optional[str]) -> bool:
        """Whether ``user`` (None: anonymous) may read, list and zip every path (and write
        every one, uploads being on): a logged-in user, or anyone when nothing is protected.
        Then a handler need not find a path's real path to ask."""
        return user is not None or self._protected is None

    def protects(self, url_path: str, real_path: str) -> bool:
        """Whether the entry at ``url_path`` and ``real_path`` needs a login."""
        protected = self._protected
        if protected is None:
            return False
        if protected.covers(_segments(url_path)):
            return True
        if real_path.startswith(self._root_prefix):
            segments = _segments(real_path[len(self._root_prefix):])
            return protected.covers(segments) or self._linked.covers(segments)
        return False

    def checker(self, user: Optional[str]) -> Checker:
        """:meth:`may` with ``user`` bound, as handlers receive it."""
        return functools.partial(self.may, user)


def _segments(path: str) -> Tuple[str, ...]:
    """The non-empty segments of a decoded, normalised path."""
    return tuple(segment for segment in path.split("/") if segment)
