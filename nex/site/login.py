"""Basic authentication (RFC 7617) against a users file; shared by the proxy and the files.

The users file holds one ``user:hash`` line per user; blank lines and lines starting with
``#`` are ignored (the hashes and names are :mod:`nex.site.passwords`'s).

:class:`UsersFile` checks the credentials of an ``Authorization`` or ``Proxy-Authorization``
value and re-reads the file when it changes; :class:`FailureLimiter` says when a login has
failed too often and must wait (429).  :class:`Login` puts the two together: the one login
check that the site and the proxy both use.  :class:`SiteAuth` puts it in front of the files
under the ``[auth] protect`` prefixes (:class:`ProtectedPaths`).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import math
import os
import threading
import time
import unicodedata
from typing import (TYPE_CHECKING, Callable, Dict, Iterable, Optional, Sequence,
                    Tuple)
from urllib.parse import quote

from nex.addresses import parse_address, unmapped
from nex.http.errors import HTTPError
from nex.files.paths import split_path
from nex.files.static import SIDECAR_EXTENSIONS
from nex.site.passwords import PasswordHash, basic_credentials, challenge, decoy_hash, parse_users
from nex.watchedfile import WatchedFile

if TYPE_CHECKING:
    from nex.process.config import Config

_CACHE_SIZE = 1024

def _ignore(message: str) -> None:
    """The default ``on_error``: no log."""


class UsersFile:
    """The users of a users file, checked against Basic credentials; see the module text.

    Build it with :meth:`load`.  The file is re-read when it changes (looked at no more than
    once per ``check_interval`` seconds); a new version that cannot be read or parsed is
    reported through ``on_error`` and the previous users stay in force.
    """

    def __init__(self, users: WatchedFile[Dict[str, PasswordHash]]) -> None:
        self._users = users
        # scrypt costs tens of milliseconds; a client sends the same credentials with every
        # request, so a bounded table remembers which values passed.  It is keyed by an HMAC
        # under a per-process secret, so it holds no password and a lookup's timing says
        # nothing about any stored value.
        self._secret = os.urandom(32)
        self._passed: "collections.OrderedDict[bytes, str]" = collections.OrderedDict()
        self._passed_for: Dict[str, PasswordHash] = {}
        self._lock = threading.Lock()
        self._unknown_user = decoy_hash()

    @classmethod
    def load(cls, path: str, *, on_error: Callable[[str], None] = _ignore,
             check_interval: float = 1.0) -> "UsersFile":
        """The users file at ``path``; ``ValueError("<path> line N: ...")`` if it is bad."""
        return cls(WatchedFile(path, parse_users, on_error, check_interval=check_interval))

    def check(self, authorization: Optional[str]) -> Optional[str]:
        """The user name when ``authorization`` carries a listed user's password, else None.

        ``authorization`` is the value of ``Authorization`` or ``Proxy-Authorization`` (None
        when the request has none).  An unknown user costs the same scrypt work as a known
        one, so timing does not tell which names exist.
        """
        if authorization is None:
            return None
        users = self._users.value
        digest = hmac.new(self._secret, authorization.encode("utf-8", "surrogatepass"),
                          hashlib.sha256).digest()
        with self._lock:
            if self._passed_for is not users:
                self._passed.clear()
                self._passed_for = users
                self._unknown_user = decoy_hash(users.values())
            user = self._passed.get(digest)
            if user is not None:
                self._passed.move_to_end(digest)
                return user
        # Parsed only now: a value that passed before needs no second look.
        credentials = basic_credentials(authorization)
        if credentials is None:
            return None
        name, password = credentials
        stored = users.get(name)
        matched = (stored or self._unknown_user).verify(password)
        if stored is None or not matched:
            return None
        with self._lock:
            if self._passed_for is users:
                self._passed[digest] = name
                if len(self._passed) > _CACHE_SIZE:
                    self._passed.popitem(last=False)
        return name


#: How many times more failures one address may have, over all user names, than one user
#: name from that address.
ADDRESS_CEILING = 10


class FailureLimiter:
    """Counts failed logins and says when a login must wait (429).

    Failures count per (client address, user name): a user name may fail ``per_minute``
    times in a burst, then once every ``60 / per_minute`` seconds (a token bucket).  Each
    address also has a budget :data:`ADDRESS_CEILING` times larger over all its user names;
    once that is spent, only user names that have not failed from the address are still
    tried.  So many people behind one address (NAT, or every local program of a loopback
    proxy) cannot lock each other out, while guessing many names from one address stays
    slow.  IPv6 clients count per /64 network, since one host usually holds a whole /64.
    Each table keeps at most ``max_clients`` entries, forgetting the one that failed least
    recently.  Thread-safe.
    """

    def __init__(self, per_minute: int, *, max_clients: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._users = _Buckets(float(per_minute), max_clients)
        self._addresses = _Buckets(float(per_minute * ADDRESS_CEILING), max_clients)
        self._clock = clock
        self._lock = threading.Lock()

    def retry_after(self, client: str, user: str) -> int:
        """0 when ``user`` may try to log in from ``client`` now, else the whole seconds to
        wait.  ``user`` is the name the credentials carry ("" for none)."""
        address = _client_key(client)
        with self._lock:
            now = self._clock()
            wait = self._users.wait((address, user), now)
            if not wait and self._users.has_failed((address, user), now):
                wait = self._addresses.wait(address, now)
        return wait

    def record_failure(self, client: str, user: str) -> None:
        """Count one failed attempt by ``client`` as ``user``."""
        address = _client_key(client)
        with self._lock:
            now = self._clock()
            self._users.take((address, user), now)
            self._addresses.take(address, now)


class _Buckets:
    """Token buckets of ``capacity`` tokens refilled in a minute, at most ``size`` of them;
    the caller holds the lock."""

    def __init__(self, capacity: float, size: int) -> None:
        self._capacity = capacity
        self._rate = capacity / 60.0
        self._size = size
        #: key → (tokens left, when they were counted)
        self._table: "collections.OrderedDict[object, Tuple[float, float]]" = (
            collections.OrderedDict())

    def _tokens(self, key: object, now: float) -> float:
        tokens, since = self._table.get(key, (self._capacity, now))
        return min(self._capacity, tokens + (now - since) * self._rate)

    def has_failed(self, key: object, now: float) -> bool:
        """Whether ``key`` has failures not yet forgiven."""
        return self._tokens(key, now) < self._capacity

    def wait(self, key: object, now: float) -> int:
        """0 when ``key`` has a token, else the whole seconds until it has one."""
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            return 0
        return max(1, math.ceil((1.0 - tokens) / self._rate))

    def take(self, key: object, now: float) -> None:
        """Spend one token of ``key`` (none left: it stays empty)."""
        self._table[key] = (max(0.0, self._tokens(key, now) - 1.0), now)
        self._table.move_to_end(key)
        if len(self._table) > self._size:
            self._table.popitem(last=False)


def _client_key(client: str) -> str:
    """The bucket a client address counts in: the address (IPv4-mapped as IPv4), or its /64
    for IPv6."""
    try:
        address = unmapped(parse_address(client))
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Login:
    """One login check, for the site or the proxy: Basic credentials (the value of
    ``Authorization``, or with ``proxy`` of ``Proxy-Authorization``) against ``users``,
    behind the failure limiter ``failures`` (None: no limit).

    Refusals: ``429`` with ``Retry-After`` before any password is checked, for a user name
    that failed too often from the client's address (see :class:`FailureLimiter`); ``401``
    with ``WWW-Authenticate`` (``407`` with ``Proxy-Authenticate`` for the proxy) for
    missing or wrong credentials, the wrong ones (any value that proves no user) counted.
    """

    def __init__(self, users: UsersFile, failures: Optional[FailureLimiter], realm: str, *,
                 proxy: bool = False) -> None:
        self._users = users
        self._failures = failures
        self._status = 407 if proxy else 401
        field = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        self._challenge = ((field, challenge(realm)),)
        self._asked = ("This proxy needs a user name and password." if proxy
                       else "This part of the site needs a user name and password.")

    def verify(self, authorization: Optional[str], client: str) -> str:
        """The user name ``authorization`` proves for a request from ``client``; else the
        refusal (see the class text).  Guessing gains nothing by going fast, not even the
        password check's timing."""
        name = self._check_limit(authorization, client)
        user = self._users.check(authorization)
        if user is not None:
            return user
        if authorization is not None and self._failures is not None:
            self._failures.record_failure(client, name)
        raise self._challenge_error(authorization)

    def identify(self, authorization: str, client: str) -> Optional[str]:
        """The user ``authorization`` proves where no login is needed, else None.

        Wrong credentials are not refused there (the request goes on as anonymous), but
        they count as a failure, and a user name that failed too often is not even checked,
        so an open page cannot serve to guess passwords faster than a login.
        """
        try:
            name = self._check_limit(authorization, client)
        except HTTPError:
            return None
        user = self._users.check(authorization)
        if user is None and self._failures is not None:
            self._failures.record_failure(client, name)
        return user

    def refusal(self, authorization: Optional[str], client: str) -> HTTPError:
        """What an anonymous request for an entry that needs a login gets, after
        :meth:`identify` had its say: ``429`` while the limiter holds, else the challenge."""
        try:
            self._check_limit(authorization, client)
        except HTTPError as error:
            return error
        return self._challenge_error(authorization)

    def _check_limit(self, authorization: Optional[str], client: str) -> str:
        """The user name ``authorization`` tries (empty: none); ``429`` with ``Retry-After``
        when that name failed too often from ``client``."""
        failures = self._failures
        if failures is None:
            return ""
        credentials = basic_credentials(authorization)
        name = credentials[0] if credentials is not None else ""
        wait = failures.retry_after(client, name)
        if wait:
            raise HTTPError(429, f"Too many failed logins; try again in {wait} s.",
                            headers=[("Retry-After", str(wait))], refusal="auth")
        return name

    def _challenge_error(self, authorization: Optional[str]) -> HTTPError:
        """The ``401`` (``407``) with the challenge, saying whether credentials were sent."""
        message = (self._asked if authorization is None
                   else "The user name or password was not accepted.")
        return HTTPError(self._status, message, headers=self._challenge, refusal="auth")


# --- the file server's login ---------------------------------------------------------------

# What a protected prefix may hold as written: printable ASCII (escapes included) stays, the
# rest is percent-encoded as UTF-8 first, so "/café/" and "/caf%C3%A9/" are one prefix.
_PREFIX_AS_WRITTEN = "".join(chr(code) for code in range(0x21, 0x7f) if chr(code) != "\\")


def _segment_key(segment: str) -> str:
    """What a path segment is compared as: its canonical caseless form (Unicode D145).

    A case-insensitive file system (vfat, exFAT, ext4 casefold folders) serves
    ``/PRIVATE/x`` from the same file as ``/private/x``, so protection cannot depend on case.
    """
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", segment).casefold())


def parse_path_prefix(text: str) -> Tuple[str, ...]:
    """The segments a protected URL-path prefix such as ``/private/`` stands for.

    The prefix is read as a request path is (:func:`nex.files.paths.split_path`): escapes
    decoded once, dot segments resolved, empty segments dropped, so ``/`` is no segment (the
    whole site) and ``/private`` means what ``/private/`` does.  Characters outside ASCII may
    be written as they are.  ``ValueError`` when ``text`` is not such a path.
    """
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not a URL path such as /private/")
    try:
        segments, _ = split_path(quote(text, safe=_PREFIX_AS_WRITTEN))
    except HTTPError:
        raise ValueError(f"{text!r} is not a URL path such as /private/") from None
    return tuple(_segment_key(segment) for segment in segments)


class ProtectedPaths:
    """URL-path prefixes under which a login is needed, compared on whole segments.

    ``/private/`` covers ``/private``, ``/private/`` and ``/private/x``, not ``/privateer``;
    ``/`` covers every path.  Segments compare without regard to letter case or Unicode
    normal form.  ``ValueError`` for a prefix :func:`parse_path_prefix` refuses.
    """

    def __init__(self, prefixes: Iterable[str]) -> None:
        self._texts = tuple(prefixes)
        self._set_keys(tuple(parse_path_prefix(prefix) for prefix in self._texts))

    def _set_keys(self, prefixes: Tuple[Tuple[str, ...], ...]) -> None:
        self._prefixes = prefixes
        self._longest = max((len(prefix) for prefix in prefixes), default=0)

    def linked(self, real_root: str) -> "ProtectedPaths":
        """Where the prefixes that are (or pass through) symbolic links lead, as prefixes
        relative to the document root whose real path is ``real_root``.

        What a protected link leads to is as protected as the link: with ``docs ->
        private`` and ``/docs/`` protected, ``/private/`` is too.  The links are read
        when the settings are loaded; targets outside the root are left out.
        """
        root = real_root.rstrip("/")
        targets = []
        for text in self._texts:
            segments, _ = split_path(quote(text, safe=_PREFIX_AS_WRITTEN))
            plain = root + "".join(["/" + segment for segment in segments])
            real = os.path.realpath(plain)
            if segments and real != plain and real.startswith(root + "/"):
                targets.append(tuple(_segment_key(segment)
                                     for segment in real[len(root) + 1:].split("/")))
        result = ProtectedPaths(())
        result._set_keys(tuple(targets))
        return result

    def covers(self, segments: Sequence[str]) -> bool:
        """Whether the decoded, normalised path ``segments`` lie under a prefix.

        A precompressed sidecar (``report.txt.gz``, ``.br``) holds its file's bytes, so it
        lies under every prefix its file does.
        """
        keys = tuple(_segment_key(segment) for segment in segments[:self._longest])
        if self._under(keys):
            return True
        if not keys or len(segments) > self._longest:
            return False
        last = keys[-1]
        for extension in SIDECAR_EXTENSIONS:
            # Keys are casefolded, so ".GZ" compares as ".gz".
            if len(last) > len(extension) and last.endswith(extension):
                return self._under(keys[:-1] + (last[:-len(extension)],))
        return False

    def _under(self, keys: Tuple[str, ...]) -> bool:
        """Whether the segment ``keys`` (:func:`_segment_key`'s) begin with a prefix."""
        return any(keys[:len(prefix)] == prefix for prefix in self._prefixes
                   if len(prefix) <= len(keys))


class SiteAuth:
    """Basic authentication (RFC 7617) for the files under the protected prefixes.

    ``users`` holds the accounts, ``protected`` the prefixes, ``realm`` names the protection
    space in the ``WWW-Authenticate`` challenge; ``failures`` counts failed logins per client
    (None: no limit).  Requests for paths outside the prefixes need no login.
    """

    def __init__(self, users: UsersFile, protected: ProtectedPaths, realm: str,
                 failures: Optional[FailureLimiter]) -> None:
        self._login = Login(users, failures, realm)
        self._protected = protected

    @classmethod
    def from_config(cls, config: "Config", *,
                    on_error: Callable[[str], None]) -> Optional["SiteAuth"]:
        """The ``[auth]`` settings' authentication, or None when ``users_file`` is empty.

        ``on_error`` receives one line when the users file changes into something that
        cannot be used.  ``ValueError`` when the file has turned bad since the settings
        were checked.
        """
        if not config.auth_users_file:
            return None
        per_minute = config.auth_max_failures_per_minute
        return cls(UsersFile.load(config.auth_users_file, on_error=on_error),
                   ProtectedPaths(config.auth_protect), config.auth_realm,
                   FailureLimiter(per_minute) if per_minute else None)

    @property
    def protected(self) -> ProtectedPaths:
        """The prefixes under which a login is needed."""
        return self._protected

    def protects(self, path: str) -> bool:
        """Whether the request path ``path`` (as sent) needs a login.

        The path is split exactly as the resolver splits it, so no spelling (escapes, dot
        segments, doubled slashes) reaches a protected file without matching its prefix.
        Raises the resolver's ``HTTPError(400)`` for a path it would refuse.
        """
        return self.covers(split_path(path)[0])

    def covers(self, segments: Sequence[str]) -> bool:
        """Whether the decoded path ``segments`` (:func:`split_path`'s) need a login."""
        return self._protected.covers(segments)

    def login(self, authorization: Optional[str], client: str) -> str:
        """The user name ``authorization`` (the ``Authorization`` value) proves for a request
        from ``client``; ``429`` or ``401`` otherwise (see :class:`Login`)."""
        return self._login.verify(authorization, client)

    def identify(self, authorization: str, client: str) -> Optional[str]:
        """The user ``authorization`` proves on a path that needs no login, else None (see
        :meth:`Login.identify`)."""
        return self._login.identify(authorization, client)

    def refusal(self, authorization: Optional[str], client: str) -> HTTPError:
        """What an anonymous request for an entry that needs a login gets (see
        :meth:`Login.refusal`)."""
        return self._login.refusal(authorization, client)


def cleartext_warning(config: "Config") -> Optional[str]:
    """A warning when Basic passwords would cross a network unencrypted, else None.

    That is when a users file is set, no TLS certificate is, and Nex listens on an address
    other than loopback.  Behind a TLS-terminating proxy on the same machine, bind to
    loopback and the warning goes away.
    """
    if not config.auth_users_file or config.tls_certificate:
        return None
    if config.bind == "localhost" or ipaddress.ip_address(config.bind).is_loopback:
        return None
    return (f"Basic authentication is on without TLS while listening on {config.bind}:"
            " passwords cross the network readable by anyone on the way; use TLS, or"
            " bind to loopback behind a TLS-terminating proxy")
