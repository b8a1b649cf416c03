"""Contents of small files kept in memory, so that serving them costs no file system calls.

An entry is used only while the file's ``stat`` (which the resolver makes anyway) still
shows the same size, modification time, change time and inode; any change reads the file
anew.  The total size is bounded: when a new entry would pass it, the cache starts over.

Other caches key what they remember about a folder's entries (which sidecars it lacks, a
rendered listing) by the folder's :func:`folder_identity`, and trust it only once the folder
has :func:`settled`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Dict, Optional, Tuple

#: What a folder's ``stat`` says about its entries: device, inode, mtime_ns, ctime_ns.
FolderIdentity = Tuple[int, int, int, int]
#: How long after its last change a folder's identity is trusted to change with its
#: entries.  Adding, removing or renaming an entry sets the folder's mtime and ctime, but
#: only as finely as the file system keeps them (a clock tick; two seconds on FAT): a second
#: change within the same tick leaves them as they were.  Nothing but the kernel sets a
#: ctime, so ``touch`` or an archive restoring an old mtime cannot hide a change either.
SETTLED_NS = 2_000_000_000


def folder_identity(status: os.stat_result) -> FolderIdentity:
    """The identity of the folder whose ``stat`` is ``status``."""
    return status.st_dev, status.st_ino, status.st_mtime_ns, status.st_ctime_ns


def settled(identity: FolderIdentity) -> bool:
    """Whether the folder's last change is old enough (:data:`SETTLED_NS`) that any later
    change of its entries will show in its identity."""
    return time.time_ns() - identity[3] > SETTLED_NS

#: Files up to this size are cached; larger ones go out through sendfile.
MAX_FILE_SIZE = 64 * 1024

_Key = Tuple[int, int, int, int]


class SmallFileCache:
    """Maps a path to its bytes, checked against a fresh ``os.stat_result`` on every use.

    Workers share one cache.  A hit is a single dictionary read; storing an entry, and the
    byte count that bounds the cache, change together under a lock, so the count is always
    the sum of the cached sizes.  The file itself is read outside the lock: two workers may
    read the same file at once, which is harmless.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._max_file_size = min(MAX_FILE_SIZE, max_bytes)
        self._entries: Dict[str, Tuple[_Key, bytes]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def read(self, path: str, status: os.stat_result) -> Optional[bytes]:
        """The file's bytes if it is small enough to cache, else None.

        Raises ``OSError`` when the file cannot be read, and ``FileChangedError`` when it no
        longer has the size ``status`` gave it.
        """
        size = status.st_size
        if size > self._max_file_size:
            return None
        key = (size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino)
        entry = self._entries.get(path)
        if entry is not None and entry[0] == key:
            return entry[1]
        data = _read_exactly(path, size)
        self._store(path, key, data)
        return data

    def _store(self, path: str, key: _Key, data: bytes) -> None:
        """Cache ``data`` for ``path`` in place of any older entry, within the byte bound."""
        with self._lock:
            replaced = self._entries.pop(path, None)
            if replaced is not None:
                self._bytes -= len(replaced[1])
            if self._bytes + len(data) > self._max_bytes:
                self._entries.clear()
                self._bytes = 0
            self._entries[path] = (key, data)
            self._bytes += len(data)


class FileChangedError(OSError):
    """The file's size changed between its ``stat`` and its reading."""


def _read_exactly(path: str, size: int) -> bytes:
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        data = os.pread(descriptor, size + 1, 0)
    finally:
        os.close(descriptor)
    if len(data) != size:
        raise FileChangedError(f"{path} changed size while being read")
    return data
