"""Descriptors of recently served files kept open, so a range request costs no ``open``.

Like nginx's ``open_file_cache``: a path maps to a descriptor opened earlier, which is used
only while the path's current ``stat`` (the resolver makes one for every request) shows the
identity the descriptor had when it was opened: device, inode, size and mtime_ns.  A file
replaced by a rename has another inode, a file rewritten in place another size or mtime, a
deleted file never gets past the resolver: each is opened anew, and the old descriptor is
closed as soon as no response still reads from it.

Responses read a descriptor only with ``os.sendfile`` and ``os.pread`` at explicit offsets,
never moving its file position, so one descriptor serves any number of responses at once.
Each response holds a :class:`CachedFile` whose ``close`` gives the descriptor back.

The cache is bounded by count (the least recently used entry goes first) and by idle time:
an entry unused for ``idle_seconds`` is closed at the next use of the cache, or at
:meth:`OpenFileCache.close` when the server stops.  One lock guards the table and each
entry's count of readers; no system call but ``close`` runs under it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Optional, Tuple

from nex.http.response import OpenFile

#: The identity a descriptor is valid for: st_dev, st_ino, st_size, st_mtime_ns.
Identity = Tuple[int, int, int, int]


def identity_of(status: os.stat_result) -> Identity:
    """The identity of the file whose ``stat`` (or ``fstat``) is ``status``."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


class _Entry:
    __slots__ = ("identity", "descriptor", "readers", "last_used", "evicted")

    def __init__(self, identity: Identity, descriptor: int, now: float) -> None:
        self.identity = identity
        self.descriptor = descriptor
        self.readers = 0
        self.last_used = now
        #: Out of the table: closed when the last reader gives it back.
        self.evicted = False


class CachedFile(OpenFile):
    """A response's hold on a cached descriptor; :meth:`close` gives it back, once."""

    __slots__ = ("_cache", "_entry")

    def __init__(self, cache: "OpenFileCache", entry: _Entry) -> None:
        super().__init__(entry.descriptor)
        self._cache = cache
        self._entry: Optional[_Entry] = entry

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._entry is None

    def close(self) -> None:
        """Give the descriptor back to the cache; later calls do nothing."""
        entry, self._entry = self._entry, None
        if entry is not None:
            self._cache._give_back(entry)


class OpenFileCache:
    """Up to ``max_files`` open descriptors, each closed after ``idle_seconds`` unused."""

    def __init__(self, max_files: int, idle_seconds: float) -> None:
        self._max_files = max_files
        self._idle_seconds = idle_seconds
        self._entries: "OrderedDict[str, _Entry]" = OrderedDict()
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def open(self, path: str, status: os.stat_result) -> CachedFile:
        """A descriptor of ``path`` whose identity is that of ``status``, the path's current
        ``stat``: a cached one, or one opened now (and kept when it has that identity).

        Raises ``OSError`` when the file cannot be opened, and :class:`FileReplacedError`
        when what was opened is no longer the file ``status`` describes.
        """
        wanted = identity_of(status)
        now = time.monotonic()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            entry = self._entries.get(path)
            if entry is not None:
                if entry.identity == wanted:
                    entry.readers += 1
                    entry.last_used = now
                    self._entries.move_to_end(path)
                    return CachedFile(self, entry)
                self._evict(path)
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if identity_of(os.fstat(descriptor)) != wanted:
                raise FileReplacedError(f"{path} changed between its stat and its opening")
        except BaseException:
            os.close(descriptor)
            raise
        entry = _Entry(wanted, descriptor, now)
        entry.readers = 1
        with self._lock:
            if path in self._entries:
                self._evict(path)
            self._entries[path] = entry
            while len(self._entries) > self._max_files:
                self._evict(next(iter(self._entries)))
        return CachedFile(self, entry)

    def close(self) -> None:
        """Close every descriptor no response reads from; the rest close when given back."""
        with self._lock:
            for path in list(self._entries):
                self._evict(path)

    def _give_back(self, entry: _Entry) -> None:
        with self._lock:
            entry.readers -= 1
            if entry.evicted and entry.readers == 0:
                os.close(entry.descriptor)

    def _evict(self, path: str) -> None:
        """Take ``path``'s entry out of the table (under the lock), closing it if unread."""
        entry = self._entries.pop(path)
        entry.evicted = True
        if entry.readers == 0:
            os.close(entry.descriptor)

    def _sweep(self, now: float) -> None:
        """Close the entries idle for ``idle_seconds`` (under the lock, at most once a
        second: the caller waits for the time set here); the table is in order of last use,
        so the look stops at the first fresh one."""
        self._next_sweep = now + 1.0
        limit = now - self._idle_seconds
        while self._entries:
            path, entry = next(iter(self._entries.items()))
            if entry.last_used > limit:
                break
            self._evict(path)


class FileReplacedError(OSError):
    """The file at a path was replaced or changed between its ``stat`` and its opening."""
