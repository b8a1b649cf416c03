"""The proxy's DNS: each look-up bounded in time, answers kept for a while in a bounded cache.

``getaddrinfo`` blocks its caller for as long as the system's resolver takes, and every
proxied request would call it.  :class:`CachingResolver` runs each look-up in a thread of
its own and waits at most ``timeout`` seconds for it (then ``504`` naming the look-up; the
look-up finishes in the background and its answer still fills the cache).  At most
:data:`MAX_LOOKUPS` look-ups run at once, so a resolver that hangs cannot make Nex start
threads without end.  Answers are kept for ``ttl`` seconds and failures for
:data:`NEGATIVE_TTL` (or ``ttl`` when shorter), at most :data:`MAX_ENTRIES` names, the
least recently used forgotten first.  The admission checks run on every answer, cached or
not, and the addresses checked are the ones connected to.  The resolver counts its hits,
look-ups, failures and entries into a tally (:mod:`nex.proxy.figures`) under its own lock.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

from nex.addresses import parse_address
from nex.http.errors import HTTPError
from nex.proxy.figures import DNS_ENTRIES, DNS_FAILURES, DNS_HITS, DNS_LOOKUPS, Tally, new_tally

if TYPE_CHECKING:
    from nex.proxy.admission import Resolver as Lookup, SocketAddress

#: How long a failed look-up is remembered, at most.
NEGATIVE_TTL = 5.0
#: Names held in the cache, at most.
MAX_ENTRIES = 4096
#: Look-ups running at once, at most.
MAX_LOOKUPS = 32

#: A cached answer: when it expires, and the addresses (None: the look-up failed).
_Entry = Tuple[float, Optional[Tuple["SocketAddress", ...]]]


class CachingResolver:
    """``lookup(host, port)`` (such as :func:`nex.proxy.admission.resolve_host`) with a
    time-out of ``timeout`` seconds and a cache of ``ttl`` seconds (0: no cache); callable as
    ``resolver(host, port)``, raising ``OSError`` when the name does not resolve and
    ``HTTPError(504)`` when the look-up takes too long.  Thread-safe.  ``tally`` receives
    its figures (see :mod:`nex.proxy.figures`)."""

    def __init__(self, lookup: "Lookup", *, ttl: float, timeout: float,
                 clock: Callable[[], float] = time.monotonic,
                 tally: Optional[Tally] = None) -> None:
        self._lookup = lookup
        self._tally = new_tally() if tally is None else tally
        self._ttl = ttl
        self._negative_ttl = min(ttl, NEGATIVE_TTL)
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: "collections.OrderedDict[Tuple[str, int], _Entry]" = (
            collections.OrderedDict())
        self._slots = threading.BoundedSemaphore(MAX_LOOKUPS)

    def __call__(self, host: str, port: int) -> Sequence["SocketAddress"]:
        try:
            parse_address(host)
        except ValueError:
            pass
        else:
            return self._lookup(host, port)  # an IP literal needs no DNS, thread or cache
        key = (host, port)
        if self._ttl:
            with self._lock:
                entry = self._cache.get(key)
                if entry is not None:
                    if entry[0] > self._clock():
                        self._cache.move_to_end(key)
                        self._tally[DNS_HITS] += 1
                        if entry[1] is None:
                            raise OSError(f"{host} does not resolve (remembered)")
                        return entry[1]
                    del self._cache[key]
                    self._tally[DNS_ENTRIES] = len(self._cache)
        return self._look_up(host, port)

    def _look_up(self, host: str, port: int) -> Sequence["SocketAddress"]:
        """Run one look-up in its own thread and wait for it at most ``timeout`` seconds."""
        deadline = self._clock() + self._timeout
        if not self._slots.acquire(timeout=self._timeout):
            raise self._too_slow(host)
        done = threading.Event()
        outcome: List[object] = []

        def run() -> None:
            try:
                addresses: Optional[Tuple["SocketAddress", ...]] = tuple(
                    self._lookup(host, port))
            except (OSError, UnicodeError) as error:
                addresses = None
                outcome.append(error)
            else:
                outcome.append(addresses)
            finally:
                self._slots.release()
            self._remember((host, port), addresses or None)
            done.set()

        threading.Thread(target=run, name=f"nex-dns {host}", daemon=True).start()
        if not done.wait(max(0.0, deadline - self._clock())):
            raise self._too_slow(host)
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[return-value]

    def _remember(self, key: Tuple[str, int],
                  addresses: Optional[Tuple["SocketAddress", ...]]) -> None:
        """Count a look-up that ended with ``addresses`` (None: none found) and keep its
        answer for its time to live."""
        ttl = self._ttl if addresses else self._negative_ttl
        tally = self._tally
        with self._lock:
            tally[DNS_LOOKUPS] += 1
            if addresses is None:
                tally[DNS_FAILURES] += 1
            if not ttl:
                return
            self._cache[key] = (self._clock() + ttl, addresses)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_ENTRIES:
                self._cache.popitem(last=False)
            tally[DNS_ENTRIES] = len(self._cache)

    def _too_slow(self, host: str) -> HTTPError:
        return HTTPError(504, f"The DNS look-up of {host} did not finish within"
                              f" {self._timeout:g} s.", failure="dns_timeout")
