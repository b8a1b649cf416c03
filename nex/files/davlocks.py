"""WebDAV locks (RFC 4918 §6, §7, class 2), and the ``If`` header (§10.4).

A lock covers its root and, with ``Depth: infinity``, everything below it, by URL path and
by place on disk (:class:`Where`), so that a link to one of its folders reaches no locked
entry unlocked.  Locks are kept in one table per served site, shared by its threads under a
mutex; each has a time-out (``Timeout``, at most :data:`MAX_TIMEOUT` seconds) after which it
is gone.  The table holds at most :data:`MAX_LOCKS` live ones taking :data:`MAX_SHARED_BYTES`
(``503`` beyond), and the locks of one client address at most a :data:`CLIENT_SHARE` th of
either (``429`` beyond), so that no one client can fill the table and deny locks to everyone
for an hour.  Locks do not survive a restart: clients take them again, as they do after their
time-out.

**Several processes.**  A lone Nex keeps its table in memory, and a reload of its settings
starts a new one.  With ``workers`` above 1 the supervisor makes one :meth:`LockTable.shared`
table before it starts any worker, and every worker uses it, so a lock taken through one
worker binds the others; it lasts across the workers' restarts and reloads.  Its locks live
in an unlinked temporary file that the workers inherit: each use of the table holds a POSIX
record lock on the file (``fcntl.lockf``, shared to read, exclusive to change), and a
process reads the locks again only when the file's generation number has moved since it
last did, so a request that finds the table unchanged costs two ``fcntl`` calls and one
16-byte read.  A change writes the locks into whichever of the file's two slots the current
generation does not use, and only then the 16-byte head naming the new generation: a process
killed while it writes, or a write that fails (a full disk), leaves the previous table in
force, never a torn one.  ``time.monotonic`` is the one system-wide clock all the processes
read.

A request that changes a locked resource must name the lock's token in its ``If`` header
(else ``423 Locked``), and an ``If`` header whose every list is false is ``412``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import struct
import tempfile
import threading
import time
import uuid
from typing import (Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence,
                    Set, Tuple)
from urllib.parse import urlsplit

from nex.http.errors import HTTPError
from nex.files.paths import split_path

#: The longest a lock lasts without being refreshed, in seconds.
MAX_TIMEOUT = 3600
#: The time-out of a lock whose request asked for none.
DEFAULT_TIMEOUT = 600
#: The most live locks one site holds.
MAX_LOCKS = 10000
#: The most bytes the live locks of a table take as a shared table's file holds them
#: (owners' markup included), so that no change rewrites more and no table grows past it in
#: memory; ``503`` beyond, as for :data:`MAX_LOCKS`.
MAX_SHARED_BYTES = 8 * 1024 * 1024
#: The live locks of one client address take at most this fraction (its inverse) of
#: :data:`MAX_LOCKS` and of :data:`MAX_SHARED_BYTES`.
CLIENT_SHARE = 16

# RFC 4918 §10.7: TimeOut = "Timeout" ":" 1#TimeType;  TimeType = ("Second-" DAVTimeOutVal
# | "Infinite");  DAVTimeOutVal = 1*DIGIT.
_TIME_TYPE = re.compile(r"Second-([0-9]{1,12})|Infinite", re.IGNORECASE)
# RFC 4918 §10.4.2: the tokens of an If header.  Coded-URL = "<" absolute-URI ">";
# Resource-Tag = "<" Simple-ref ">"; entity-tag as in RFC 9110 §8.8.3.
_IF_TOKEN = re.compile(
    r'[ \t]*(?:(?P<open>\()|(?P<close>\))|(?P<not>Not)\b|<(?P<url>[^<>\s]*)>'
    r'|\[(?P<etag>(?:W/)?"[\x21\x23-\x7e\x80-\xff]*")\])[ \t]*')
_LOCK_TOKEN = re.compile(r"[ \t]*<(?P<token>[^<>\s]+)>[ \t]*")
#: The head of a shared table's file: its generation, then the length of that generation's
#: JSON, which is in slot ``generation % 2`` (:func:`_slot`).
_HEAD = struct.Struct(">QQ")

Path = Tuple[str, ...]


class Where(NamedTuple):
    """A resource as the locks know it: its URL ``path`` (segments), and its ``places`` on
    disk (segments of absolute paths, at least one).  A lock's are where its entry lies
    (its folder's links resolved) and, for a link, where it leads; a request's are what it
    changes (:func:`nex.files.davresource.locate_entry`,
    :func:`~nex.files.davresource.locate_members`).

    A lock binds a resource by its URL path or any of its places, so that a URL reaching the
    same entry through a link (an alias of one of its folders) is held by the same locks.
    What a link inside a locked folder leads to is bound only through that folder's URL:
    reached by its own path, it is not locked.
    """

    path: Path
    places: Tuple[Path, ...]


def _within(path: Path, root: Path, infinite: bool) -> bool:
    """Whether ``path`` is ``root`` or, with ``infinite``, lies below it."""
    return path == root or (infinite and path[:len(root)] == root)


@dataclasses.dataclass
class Lock:
    """One lock: its token, the URL path it was taken on and that resource's places on disk
    (see :class:`Where`), its depth, scope, owner markup, the ``time.monotonic()`` it ends
    at, the address of the client that took it, and the bytes it takes in a shared table's
    file."""

    token: str
    root: Path
    places: Tuple[Path, ...]
    infinite: bool
    exclusive: bool
    owner: str
    timeout: int
    ends: float
    client: str
    size: int = 0

    def covers(self, where: Where) -> bool:
        """Whether this lock applies to ``where``: by its URL path, or by a place on disk."""
        infinite = self.infinite
        return _within(where.path, self.root, infinite) or any(
            _within(place, mine, infinite) for place in where.places for mine in self.places)

    def taken_below(self, where: Where) -> bool:
        """Whether this lock was taken on ``where`` or below it."""
        return _within(self.root, where.path, True) or any(
            _within(mine, place, True) for place in where.places for mine in self.places)


class LockConflict(HTTPError):
    """423: a lock in the way of a new one; ``root`` is the path it was taken on."""

    def __init__(self, root: Path) -> None:
        super().__init__(423, "The resource is locked.")
        self.root = root


@dataclasses.dataclass
class Condition:
    """One condition of an ``If`` list: a state token or an entity tag, maybe negated."""

    negated: bool
    token: Optional[str] = None
    etag: Optional[str] = None


@dataclasses.dataclass
class IfList:
    """One parenthesised list of an ``If`` header and the resource it is tagged with
    (None: the request's own)."""

    resource: Optional[Path]
    conditions: List[Condition]


def parse_if(value: str) -> List[IfList]:
    """The lists of an ``If`` header (RFC 4918 §10.4); 400 when it does not parse."""
    lists: List[IfList] = []
    resource: Optional[Path] = None
    at = 0
    current: Optional[IfList] = None
    negated = False
    while at < len(value):
        match = _IF_TOKEN.match(value, at)
        if match is None:
            raise HTTPError(400, "The If header is malformed.")
        at = match.end()
        if match["open"]:
            if current is not None:
                raise HTTPError(400, "The If header is malformed.")
            current = IfList(resource, [])
        elif match["close"]:
            if current is None or not current.conditions or negated:
                raise HTTPError(400, "The If header is malformed.")
            lists.append(current)
            current = None
        elif current is None:
            if match["url"] is None:
                raise HTTPError(400, "The If header is malformed.")
            resource = _tag_path(match["url"])
        elif match["not"]:
            if negated:
                raise HTTPError(400, "The If header is malformed.")
            negated = True
        else:
            current.conditions.append(Condition(negated, match["url"], match["etag"]))
            negated = False
    if current is not None or not lists:
        raise HTTPError(400, "The If header is malformed.")
    return lists


def _tag_path(url: str) -> Path:
    """The path segments a Resource-Tag names (an absolute URI or an absolute path)."""
    try:
        return tuple(split_path(urlsplit(url).path or "/")[0])
    except (HTTPError, ValueError):
        raise HTTPError(400, "The If header names a resource that is not a path.") from None


def parse_timeout(value: Optional[str]) -> int:
    """The seconds a ``Timeout`` header asks for, bounded by :data:`MAX_TIMEOUT`; the first
    well-formed choice wins, and none gives :data:`DEFAULT_TIMEOUT`."""
    for choice in (value or "").split(","):
        match = _TIME_TYPE.fullmatch(choice.strip(" \t"))
        if match:
            return min(MAX_TIMEOUT, int(match[1]) if match[1] else MAX_TIMEOUT) or 1
    return DEFAULT_TIMEOUT


def parse_lock_token(value: Optional[str]) -> str:
    """The token of a ``Lock-Token`` header (``<`` Coded-URL ``>``); 400 when malformed."""
    match = _LOCK_TOKEN.fullmatch(value or "")
    if match is None:
        raise HTTPError(400, "UNLOCK names its lock in Lock-Token: <token>.")
    return match["token"]


def _slot(generation: int) -> int:
    """Where a shared table's file holds the locks of ``generation``."""
    return _HEAD.size + generation % 2 * MAX_SHARED_BYTES


def _encode(locks: Iterable[Lock]) -> bytes:
    """``locks`` as a shared table's file holds them."""
    return json.dumps([dataclasses.asdict(lock) for lock in locks],
                      separators=(",", ":")).encode("utf-8")


def _put(file: int, generation: int, data: bytes) -> None:
    """Make ``data`` the locks of the shared file ``file`` as ``generation``: its slot first,
    then the head that names it; OSError, the head untouched, when a write falls short."""
    if os.pwrite(file, data, _slot(generation)) != len(data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if os.pwrite(file, _HEAD.pack(generation, len(data)), 0) != _HEAD.size:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


class LockTable:
    """The live locks of one site.  Every method is safe to call from any thread, and for a
    :meth:`shared` table from any process forked after it was made."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 file: Optional[int] = None) -> None:
        self._locks: Dict[str, Lock] = {}
        self._mutex = threading.Lock()
        self._clock = clock
        #: The descriptor of a shared table's file (see the module); None: in memory only.
        self._file = file
        #: The generation of the file that ``_locks`` holds.
        self._generation = 0

    @classmethod
    def shared(cls, clock: Callable[[], float] = time.monotonic) -> "LockTable":
        """A table that this process and those it forks from now on share (see the module);
        its file is unlinked at once, so nothing is left behind."""
        fd, path = tempfile.mkstemp(prefix="nex-davlocks-")
        os.unlink(path)
        try:
            _put(fd, 1, b"[]")
        except OSError:
            os.close(fd)
            raise
        table = cls(clock, fd)
        table._generation = 1
        return table

    @contextlib.contextmanager
    def _held(self, change: bool) -> Iterator[None]:
        """``_locks`` current and this thread's alone; a shared table's file locked against
        other processes' changes, or with ``change`` against any other use, and what the
        caller changed written back when it returns."""
        with self._mutex:
            if self._file is None:
                yield
                return
            fcntl.lockf(self._file, fcntl.LOCK_EX if change else fcntl.LOCK_SH)
            try:
                self._read()
                yield
                if change:
                    self._write()
            finally:
                fcntl.lockf(self._file, fcntl.LOCK_UN)

    def _read(self) -> None:
        """Read the shared file's locks again if another process changed them (file locked)."""
        generation, length = _HEAD.unpack(os.pread(self._file, _HEAD.size, 0))
        if generation == self._generation:
            return
        entries = json.loads(os.pread(self._file, length, _slot(generation)))
        self._locks = {entry["token"]: Lock(**{
            **entry, "root": tuple(entry["root"]),
            "places": tuple(tuple(place) for place in entry["places"])}) for entry in entries}
        self._generation = generation

    def _write(self) -> None:
        """Write the locks to the shared file as its next generation (file locked); 503 and
        the file unchanged when they do not fit or cannot be written."""
        data = _encode(self._locks.values())
        generation = self._generation + 1
        self._generation = -1  # until the head is written: a failed change is dropped
        if len(data) > MAX_SHARED_BYTES:
            raise HTTPError(503, "Too many locks are held.", headers=[("Retry-After", "60")])
        try:
            _put(self._file, generation, data)
        except OSError:
            raise HTTPError(503, "The WebDAV lock table cannot be written.",
                            headers=[("Retry-After", "60")]) from None
        self._generation = generation

    def _live(self) -> List[Lock]:
        """The live locks, after dropping the expired ones (held)."""
        now = self._clock()
        for token in [token for token, lock in self._locks.items() if lock.ends <= now]:
            del self._locks[token]
        return list(self._locks.values())

    def live(self) -> List[Lock]:
        """Every live lock, as the table holds them now."""
        with self._held(change=False):
            return self._live()

    def _locks_on(self, where: Where, below: bool) -> List[Lock]:
        """The live locks covering ``where``, and with ``below`` those taken under it too
        (held)."""
        return [lock for lock in self._live()
                if lock.covers(where) or (below and lock.taken_below(where))]

    def take(self, where: Where, infinite: bool, exclusive: bool, owner: str,
             timeout: int, client: str) -> Lock:
        """A new lock on ``where`` for the client at address ``client``;
        :class:`LockConflict` when a lock in the way conflicts (an exclusive one, or any
        where this one is exclusive), 503 when the table is full, 429 when the client's
        share of it is."""
        with self._held(change=True):
            live = self._live()
            for lock in live:
                overlaps = lock.covers(where) or (infinite and lock.taken_below(where))
                if overlaps and (exclusive or lock.exclusive):
                    raise LockConflict(lock.root)
            lock = Lock(f"urn:uuid:{uuid.uuid4()}", where.path, where.places, infinite,
                        exclusive, owner, timeout, self._clock() + timeout, client)
            lock.size = len(_encode([lock]))
            if (len(live) >= MAX_LOCKS
                    or sum(held.size for held in live) + lock.size > MAX_SHARED_BYTES):
                raise HTTPError(503, "Too many locks are held.", headers=[("Retry-After", "60")])
            mine = [held.size for held in live if held.client == client]
            if (len(mine) >= MAX_LOCKS // CLIENT_SHARE
                    or sum(mine) + lock.size > MAX_SHARED_BYTES // CLIENT_SHARE):
                raise HTTPError(429, "Your address holds too many locks; release some first.",
                                headers=[("Retry-After", "60")])
            self._locks[lock.token] = lock
            return lock

    def refresh(self, token: str, where: Where, timeout: int) -> Lock:
        """The lock ``token`` covering ``where``, its time-out restarted; 412 when there is
        none (RFC 4918 §9.10.6: lock-token-matches-request-uri)."""
        with self._held(change=True):
            lock = self._covering(token, where, 412)
            lock.timeout, lock.ends = timeout, self._clock() + timeout
            return lock

    def release(self, token: str, where: Where) -> None:
        """Remove the lock ``token`` covering ``where``; 409 when there is none."""
        with self._held(change=True):
            self._covering(token, where, 409)
            del self._locks[token]

    def _covering(self, token: str, where: Where, status: int) -> Lock:
        """The live lock ``token`` if it covers ``where``, else ``status`` (held)."""
        self._live()
        lock = self._locks.get(token)
        if lock is None or not lock.covers(where):
            raise HTTPError(status, "No lock with that token covers this resource.")
        return lock

    def forget(self, where: Where) -> None:
        """Drop every lock whose entry lies at the entry ``where`` or below it (it was
        deleted or moved away), through whatever URL it was taken; what a link led to
        stays, and so do the locks taken on it."""
        with self._held(change=True):
            for lock in self._live():
                if _within(lock.places[0], where.places[0], True):
                    del self._locks[lock.token]

    def check(self, if_header: Optional[str], request: Where,
              changed: Sequence[Tuple[Where, bool]],
              etag_of: Callable[[Path], Optional[str]]) -> None:
        """Let a request through the ``If`` header and the locks.

        ``request`` is the resource the request names; ``changed`` lists those it modifies,
        each with whether everything below it changes too.  Raises 412 when the ``If``
        header is false for the request's resource (RFC 4918 §10.4), 423 when a lock on a
        changed one was not named in it.  ``etag_of`` gives the ETag of a URL path.
        """
        with self._held(change=False):
            self._check(if_header, request, changed, etag_of)

    @contextlib.contextmanager
    def held_still(self) -> Iterator["HeldLocks"]:
        """Keep every lock as it is until the block ends: none is taken, refreshed or
        released meanwhile, in any process.  What the block checks on the locks it yields
        then still holds for what the block changes."""
        with self._held(change=False):
            yield HeldLocks(self)

    def _check(self, if_header: Optional[str], request: Where,
               changed: Sequence[Tuple[Where, bool]],
               etag_of: Callable[[Path], Optional[str]]) -> None:
        """:meth:`check` (held)."""
        lists = parse_if(if_header) if if_header is not None else []
        submitted: Set[str] = set()
        if lists:
            mine = [entry for entry in lists if entry.resource in (None, request.path)]
            for entry in lists:
                submitted.update(condition.token for condition in entry.conditions
                                 if condition.token and not condition.negated)
            if mine and not any(self._holds(entry, request, etag_of) for entry in mine):
                raise HTTPError(412, "The If header's conditions do not hold.")
        for where, below in changed:
            for lock in self._locks_on(where, below):
                if lock.token not in submitted:
                    raise HTTPError(423, "The resource is locked; its lock token was not "
                                         "submitted.")

    def _holds(self, entry: IfList, where: Where,
               etag_of: Callable[[Path], Optional[str]]) -> bool:
        """Whether every condition of ``entry`` holds for ``where``."""
        for condition in entry.conditions:
            if condition.token is not None:
                held = any(lock.token == condition.token
                           for lock in self._locks_on(where, False))
            else:
                held = etag_of(where.path) == condition.etag
            if held == condition.negated:
                return False
        return True


class HeldLocks:
    """A table's locks while :meth:`LockTable.held_still` keeps them as they are."""

    def __init__(self, table: LockTable) -> None:
        self._table = table

    def check(self, if_header: Optional[str], request: Where,
              changed: Sequence[Tuple[Where, bool]],
              etag_of: Callable[[Path], Optional[str]]) -> None:
        """:meth:`LockTable.check`, in the hold."""
        self._table._check(if_header, request, changed, etag_of)
