"""Paths recently found missing, remembered for as long as the folder that lacks them is
unchanged, so that a 404 asked for again costs one ``stat`` instead of the resolver's walk;
so does each index file a folder lacks when it is listed again.

The resolver (:func:`nex.files.paths.resolve`) records a miss only when the disk said the
name does not exist (``ENOENT``, ``ENOTDIR``): then the deepest folder that does exist on the
way is the *anchor*, and its :func:`nex.files.filecache.folder_identity` is kept with the
request path as sent.  Using the entry costs one ``stat`` of the anchor: while it shows the
same identity, the anchor's entries are as they were, so the name is still missing and the
uncached walk would answer the same 404.  An entry, a rename or a link added in the anchor
changes its mtime and ctime; the anchor replaced, or reached through another link, has
another inode.  A miss is kept only once the anchor has :func:`settled`, and a ``stat`` that
fails sends the request down the uncached path.  Refusals that come before the disk
(malformed paths, dotfiles) and after it (a link the policy refuses, a special file) are
never recorded, and an access policy is asked by the caller as before.

The table belongs to one dispatcher (one set of settings): a reload starts a new one.  A
look-up is one dictionary read; storing, and the clearing that bounds the table at
:data:`MAX_MISSES` entries, happen under a lock.
"""

from __future__ import annotations

import os
import threading
from typing import Dict, Optional, Tuple

from nex.files.filecache import FolderIdentity, folder_identity, settled

#: How many missing paths one table remembers; past this it starts over.
MAX_MISSES = 1024


class MissCache:
    """Request paths → (anchor folder, its identity, the path the 404 names)."""

    def __init__(self, max_entries: int = MAX_MISSES) -> None:
        self._max_entries = max_entries
        self._entries: Dict[str, Tuple[str, FolderIdentity, str]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def missing(self, path: str) -> Optional[str]:
        """The decoded path a 404 for the request path ``path`` names, when it is known to
        be missing still; else None."""
        entry = self._entries.get(path)
        if entry is None:
            return None
        anchor, identity, asked_for = entry
        try:
            status = os.stat(anchor)
        except OSError:
            return None
        return asked_for if folder_identity(status) == identity else None

    def record(self, path: str, fs_path: str, root: str, asked_for: str) -> None:
        """Remember that the request path ``path``, which names ``fs_path`` under ``root``,
        was just found missing.

        The anchor is the deepest existing folder above ``fs_path`` that holds no entry at
        all of the next name (a dangling link is an entry: nothing is recorded then).  Its
        identity is taken before that absence is confirmed, so an entry made in between
        shows as a change.
        """
        base = root.rstrip("/")
        child = fs_path
        while True:
            anchor = child.rpartition("/")[0] or "/"
            if len(anchor) < len(base):
                return
            try:
                identity = folder_identity(os.stat(anchor))
            except OSError:
                child = anchor
                continue
            break
        try:
            os.lstat(child)
            return  # an entry is there: not a plain miss
        except FileNotFoundError:
            pass
        except OSError:
            return
        if not settled(identity):
            return
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[path] = (anchor, identity, asked_for)
