"""The proxy's blacklist: destinations refused by name or address, before any DNS look-up.

An entry is one of

* a domain name — ``example.com`` refuses ``example.com`` and every name below it
  (``a.example.com``, ``b.a.example.com``) but not ``notexample.com``.  Names compare without
  letter case and without a trailing dot, internationalised names in their ASCII form
  (``bücher.example`` is ``xn--bcher-kva.example``);
* an IP address — ``192.0.2.7``, ``2001:db8::1`` or ``[2001:db8::1]``;
* a network — ``192.0.2.0/24``, ``2001:db8::/32``.

Addresses and networks refuse hosts written as IP literals; the proxy also holds every
resolved address against them (see :mod:`nex.proxy.admission`), so a name cannot reach a listed
address either.  :func:`canonical_host` is the one spelling of a host that the blacklist,
the resolver and the log all use, so what is checked is exactly what is looked up.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import urllib.parse
from typing import Callable, FrozenSet, Iterable, List, NamedTuple, Optional, Tuple, Union

from nex.addresses import Address, Network, in_networks
from nex.watchedfile import WatchedFile

# A DNS label in ASCII (RFC 1035 letters, digits and hyphens; "_" occurs in real names).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_NAME = 253
# RFC 3986 §7.4: a host whose last label is a number reads as an IPv4 address in one of the
# legacy forms inet_aton accepts (127.1, 0x7f.1, 2130706433); only dotted-quad is taken.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


@functools.lru_cache(maxsize=4096)  # a pure function; IDNA is slow, and names repeat
def canonical_host(host: str) -> str:
    """The one spelling of ``host`` that every check and the DNS look-up use.

    IP literals come back in their compressed form without brackets (``[::0:1]`` → ``::1``);
    names are percent-decoded (RFC 3986 §3.2.2: as UTF-8), converted to ASCII with IDNA,
    lowercased and stripped of one trailing dot.  Raises ``ValueError`` for anything else,
    including numbers that only legacy parsers read as IPv4 (``127.1``, ``0x7f.0.0.1``): they
    would reach an address no entry names.
    """
    literal = _ip_literal(host)
    if literal is not None:
        return literal.compressed
    text = host
    if "%" in text:
        try:
            text = urllib.parse.unquote(text, errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"{host!r} is not UTF-8 once percent-decoded") from None
    if text.endswith("."):
        text = text[:-1]
    try:
        name = text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{host!r} is not a valid host name") from None
    labels = name.split(".")
    if (len(name) > _MAX_NAME or not all(_LABEL.fullmatch(label) for label in labels)
            or _NUMERIC_LABEL.fullmatch(labels[-1])):
        raise ValueError(f"{host!r} is not a valid host name")
    return name


@functools.lru_cache(maxsize=4096)
def _ip_literal(text: str) -> Optional[Address]:
    """The address ``text`` spells (an IPv6 one with or without brackets), else None.

    Zone indices (``fe80::1%eth0``) name an interface of this machine, never a destination.
    """
    if "%" in text:
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if "." in text and ":" not in text:
            return None  # brackets hold IPv6 only (RFC 3986 §3.2.2)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Entries(NamedTuple):
    """Parsed blacklist entries: canonical domain names and networks."""

    domains: FrozenSet[str]
    networks: Tuple[Network, ...]


def parse_entry(text: str) -> Union[str, Network]:
    """A canonical domain name, or a network for an address or CIDR block; ``ValueError``."""
    literal = _ip_literal(text)
    if literal is not None:
        return ipaddress.ip_network(literal)
    if "/" in text:
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            pass
    elif "%" not in text:
        try:
            return canonical_host(text)
        except ValueError:
            pass
    raise ValueError(f"{text!r} is not a domain name, IP address or network")


def parse_entries(texts: Iterable[str]) -> Entries:
    """:class:`Entries` from entry texts; ``ValueError`` naming the first bad one."""
    domains, networks = set(), []
    for text in texts:
        entry = parse_entry(text)
        if isinstance(entry, str):
            domains.add(entry)
        else:
            networks.append(entry)
    return Entries(frozenset(domains), tuple(networks))


def parse_file(data: bytes) -> Entries:
    """The entries of a blacklist file: one a line, ``#`` starting a comment, UTF-8.

    Blank lines and blanks around an entry are ignored.  ``ValueError("line N: ...")`` for
    the first line that is not UTF-8 or not an entry.
    """
    texts: List[str] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"line {number}: not UTF-8 text") from None
        entry = line.partition("#")[0].strip(" \t\r")
        if entry:
            try:
                parse_entry(entry)
            except ValueError as error:
                raise ValueError(f"line {number}: {error}") from None
            texts.append(entry)
    return parse_entries(texts)


def _ignore(message: str) -> None:
    """An ``on_error`` for lists without a file."""


class DomainList:
    """The blacklist: ``entries`` (the ``blacklist`` setting) plus the lines of ``path``.

    The file is re-read when it changes, looked at no more than once per ``check_interval``
    seconds; a version that cannot be read or parsed is reported through ``on_error`` (one
    line) and the previous one stays in force.  Raises ``ValueError`` for a bad entry or an
    unreadable or bad file at construction.  Never looks anything up in DNS.
    """

    def __init__(self, entries: Iterable[str] = (), path: Optional[str] = None, *,
                 on_error: Callable[[str], None] = _ignore,
                 check_interval: float = 1.0) -> None:
        self._fixed = parse_entries(entries)
        self._file: Optional[WatchedFile[Entries]] = None
        if path:
            self._file = WatchedFile(path, parse_file, on_error,
                                     check_interval=check_interval)

    def _lists(self) -> Tuple[Entries, ...]:
        if self._file is None:
            return (self._fixed,)
        return self._fixed, self._file.value

    def matches(self, host: str) -> bool:
        """Whether ``host`` (a name or IP literal, without port) is refused.

        A host that is neither a valid name nor an IP literal matches nothing; the caller
        refuses it on its own (``canonical_host`` raises for it).
        """
        literal = _ip_literal(host)
        if literal is not None:
            return self.matches_address(literal)
        return self.matches_name(host)

    def matches_name(self, host: str) -> bool:
        """Whether the name ``host`` is a listed domain or lies below one (IP literals and
        malformed names: no)."""
        if not self._fixed.domains and (self._file is None or not self._file.value.domains):
            return False  # no domain is listed (the usual case): nothing to spell out
        if _ip_literal(host) is not None:
            return False
        try:
            name = canonical_host(host)
        except ValueError:
            return False
        labels = name.split(".")
        suffixes = {".".join(labels[start:]) for start in range(len(labels))}
        return any(not entries.domains.isdisjoint(suffixes) for entries in self._lists())

    @property
    def has_networks(self) -> bool:
        """Whether any address or network is listed."""
        return any(entries.networks for entries in self._lists())

    def matches_address(self, address: Address) -> bool:
        """Whether ``address`` lies in a listed address or network (IPv4-mapped: either form)."""
        if in_networks(address, self._fixed.networks):
            return True
        return self._file is not None and in_networks(address, self._file.value.networks)
