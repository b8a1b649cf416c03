"""A settings file that is re-read while Nex runs: users for Basic auth, blacklisted domains.

:class:`WatchedFile` holds what a parse function made of a file's bytes and reads the file
again when its size, modification time or inode changes, looking at most once per
``check_interval`` seconds.  A file that cannot be read or parsed at start-up is an error;
later, a bad version is reported once through a callback and the last good contents stay in
force, as squid and nginx keep their running configuration when a reload fails.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from typing import Callable, Generic, Optional, Tuple, TypeVar

T = TypeVar("T")

#: What tells one version of a file from the next: inode, size, modification time in ns.
_Signature = Tuple[int, int, int]
#: The failed version before any failure (None already means "the file is gone").
_NO_FAILURE = (-1, -1, -1)


def _read_file(path: str) -> Tuple[bytes, _Signature]:
    """The bytes of the regular file at ``path`` and its signature.

    Raises ``ValueError`` with a short reason when it is missing, not a regular file (a FIFO
    or a device could block the reader forever), or unreadable.
    """
    try:
        # O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ValueError("does not exist") from None
    except OSError as error:
        raise ValueError(f"cannot be read ({error.strerror})") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file")
        with open(descriptor, "rb", closefd=False) as handle:
            data = handle.read()
    except OSError as error:
        raise ValueError(f"cannot be read ({error.strerror})") from None
    finally:
        os.close(descriptor)
    return data, (info.st_ino, info.st_size, info.st_mtime_ns)


def _load(path: str, parse: Callable[[bytes], T]) -> Tuple[T, _Signature]:
    try:
        data, signature = _read_file(path)
        return parse(data), signature
    except ValueError as error:
        raise ValueError(f"{path} {error}") from None


def load(path: str, parse: Callable[[bytes], T]) -> T:
    """``parse`` applied once to the file at ``path``.

    Raises ``ValueError("<path> <reason>")``, e.g. ``/etc/nex/users line 3: ...`` or
    ``/etc/nex/users does not exist``: the start-up check of a setting that names the file.
    """
    return _load(path, parse)[0]


def _signature(path: str) -> Optional[_Signature]:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


class WatchedFile(Generic[T]):
    """``parse(bytes of the file at path)``, kept current as the file changes.

    ``parse`` raises ``ValueError`` with a reason such as ``line 3: ...``.  The constructor
    raises ``ValueError("<path> <reason>")`` when the file cannot be read or parsed.  Later
    failures go to ``on_error`` as one line, once per version of the file, and :attr:`value`
    keeps the last good result.  Safe to use from many threads: one of them re-reads, the
    others go on with the current value meanwhile.
    """

    def __init__(self, path: str, parse: Callable[[bytes], T],
                 on_error: Callable[[str], None], *, check_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._parse = parse
        self._on_error = on_error
        self._check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._value, self._signature = _load(path, parse)
        self._failed_signature: Optional[_Signature] = _NO_FAILURE
        self._next_check = clock() + check_interval

    @property
    def value(self) -> T:
        """The parsed contents of the newest good version of the file."""
        if self._clock() >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._next_check = self._clock() + self._check_interval
                self._reload_if_changed()
            finally:
                self._lock.release()
        return self._value

    def _reload_if_changed(self) -> None:
        current = _signature(self.path)
        if current == self._signature or current == self._failed_signature:
            return
        try:
            value, signature = _load(self.path, self._parse)
        except ValueError as error:
            self._failed_signature = current
            self._on_error(f"{error}; keeping the previous version")
            return
        self._value, self._signature, self._failed_signature = value, signature, _NO_FAILURE
