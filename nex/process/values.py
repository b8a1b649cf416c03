"""The grammar of each kind of setting value: sizes, seconds, ports, networks, paths.

Each parser takes a value's text and the folder relative paths resolve against, and returns
the typed value or raises :class:`Invalid` saying why; :mod:`nex.process.config` adds where
the value came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import nex
from nex.site.login import ProtectedPaths
from nex.site.passwords import challenge
from nex.proxy.blacklist import parse_entry
from nex.proxy.parent import parse_parent
from nex.http.origin import normalise_origin
from nex.site.clients import parse_networks
from nex.http.grammar import FIELD_VALUE, MEDIA_TYPE, REQUEST_TARGET, is_hostname
from nex.site.hosts import HostValidator
from nex.watchedfile import load


class Invalid(Exception):
    """Why one value was refused; the loader adds where the value came from."""


MAX_COUNT = 2 ** 31 - 1  # counts end up in C ints (listen backlog, thread limits)
MAX_SIZE = 2 ** 31  # "2G", also the largest request body or upload Nex takes
MAX_ZIP_SIZE = 2 ** 40  # "1024G": a folder download is streamed, never held
MAX_SECONDS = 86400.0  # socket time-outs overflow the C timeval long before "forever"
MAX_AGE = 2 ** 31  # RFC 9111 §1.2.2: caches cap delta-seconds at 2^31
MAX_WORKERS = 256

DIGITS = re.compile(r"[0-9]{1,12}")
SIZE = re.compile(r"([0-9]{1,12})(?:([KMG])(?:iB)?)?")
SIZE_UNITS = {None: 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
LIFETIME = re.compile(r"([0-9]{1,7})([smhd]?)")
LIFETIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_LIFETIME = 365 * 86400
BOOLEANS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}
EXTENSION = re.compile(r"\.[a-z0-9_+-]{1,32}")
EXTENSION_PAIR = re.compile(r"([^=]*)=([^=]*)")


def integer(low: int, high: int) -> Callable[[str, str], int]:
    """A parser for a decimal integer from ``low`` to ``high``."""
    def parse(text: str, base: str) -> int:
        if not DIGITS.fullmatch(text) or not low <= int(text) <= high:
            raise Invalid(f"must be an integer from {low} to {high}")
        return int(text)
    return parse


def byte_size(text: str) -> int:
    """Digits with an optional binary unit: ``65536``, ``64K``, ``64KiB``, ``1M``, ``2G``."""
    match = SIZE.fullmatch(text)
    if not match:
        raise Invalid("must be a number of bytes such as 65536, 64K or 1M"
                       " (K, M, G or KiB, MiB, GiB: powers of 1024)")
    return int(match.group(1)) * SIZE_UNITS[match.group(2)]


def size(low: int, high: int = MAX_SIZE) -> Callable[[str, str], int]:
    """A parser for a byte size from ``low`` up to ``high`` (a whole number of G)."""
    def parse(text: str, base: str) -> int:
        size = byte_size(text)
        if not low <= size <= high:
            raise Invalid(f"must be from {low} to {high} bytes ({high // 1024 ** 3}G)")
        return size
    return parse


def stack_size(text: str, base: str) -> int:
    """0 for the platform default, else whole 4K pages from 64K up (threading.stack_size)."""
    size = byte_size(text)
    if size != 0 and not (64 * 1024 <= size <= MAX_SIZE and size % 4096 == 0):
        raise Invalid("must be 0 (the platform default) or a multiple of 4K from 64K to 2G")
    return size


def workers(text: str, base: str) -> int:
    """1 to 256 worker processes, or ``auto``: one per CPU this process may run on."""
    if text.lower() == "auto":
        return min(MAX_WORKERS, cpu_count())
    if not DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_WORKERS:
        raise Invalid(f"must be auto or an integer from 1 to {MAX_WORKERS}")
    return int(text)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def seconds(text: str, base: str) -> float:
    """A duration in seconds, decimals allowed, above 0 and at most a day."""
    if not SECONDS.fullmatch(text) or not 0 < float(text) <= MAX_SECONDS:
        raise Invalid("must be a number of seconds above 0 and at most 86400, such as 10 or 2.5")
    return float(text)


def seconds_or_off(text: str, base: str) -> float:
    """A duration in seconds as :func:`seconds` reads it, or ``0`` for off."""
    if text == "0":
        return 0.0
    try:
        return seconds(text, base)
    except Invalid:
        raise Invalid("must be 0 (off) or a number of seconds above 0 and at most 86400,"
                      " such as 30 or 2.5") from None


def parent_proxy(text: str, base: str) -> str:
    """A parent proxy's address, ``http://[user:password@]host:port``, or empty for none."""
    if text:
        try:
            parse_parent(text)
        except ValueError as error:
            raise Invalid(str(error)) from None
    return text


def lifetime(text: str, base: str) -> int:
    """A lifetime in whole seconds, or with a unit: ``90``, ``30m``, ``24h``, ``7d``; from one
    minute to a year."""
    match = LIFETIME.fullmatch(text)
    result = int(match.group(1)) * LIFETIME_UNITS[match.group(2)] if match else 0
    if not 60 <= result <= MAX_LIFETIME:
        raise Invalid("must be a lifetime from 60 seconds to 365d, such as 3600, 30m, 24h or 7d")
    return result


def boolean(text: str, base: str) -> bool:
    """yes/no, true/false or on/off, in any letter case."""
    try:
        return BOOLEANS[text.lower()]
    except KeyError:
        raise Invalid("must be yes, no, true, false, on or off") from None


def choice(*options: str) -> Callable[[str, str], str]:
    """A parser for one word out of ``options``, in any letter case."""
    def parse(text: str, base: str) -> str:
        if text.lower() not in options:
            raise Invalid(f"must be one of {', '.join(options)}")
        return text.lower()
    return parse


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 literal (no brackets)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def bind(text: str, base: str) -> str:
    """The address to listen on: an IP literal or ``localhost``."""
    if text != "localhost" and not is_ip(text):
        raise Invalid("must be an IPv4 or IPv6 address (without brackets) or localhost")
    return text


def server_name(text: str, base: str) -> str:
    """The name shown on generated pages: a host name or an IP literal."""
    if not (is_hostname(text.lower()) or is_ip(text)):
        raise Invalid("must be a host name or an IP address")
    return text


def split_items(text: str) -> List[str]:
    """Comma-separated items, blanks around commas ignored; an empty text is no items."""
    if not text:
        return []
    items = [item.strip(" \t") for item in text.split(",")]
    if "" in items:
        raise Invalid("has an empty item between commas")
    return items


def file_names(text: str, base: str) -> Tuple[str, ...]:
    """Index file names: plain names, never a path that could leave the folder."""
    names = split_items(text)
    for name in names:
        if name in (".", "..") or not name.isprintable() or "/" in name or "\\" in name:
            raise Invalid(f"{name!r} is not a plain file name (no /, \\ or ..)")
    return tuple(names)


def host_patterns(text: str, base: str) -> Tuple[str, ...]:
    """Allowed Host patterns in the grammar HostValidator documents; at least one."""
    patterns = tuple(split_items(text))
    if not patterns:
        raise Invalid("must list at least one host pattern (* allows any host)")
    for pattern in patterns:
        try:
            HostValidator([pattern])
        except ValueError:
            raise Invalid(f"{pattern!r} is not *, *.example.com, a host name or an IP address"
                           " (each optionally with :PORT)") from None
    return patterns


def networks(text: str, base: str) -> Tuple[str, ...]:
    """IP addresses or CIDR blocks (10.0.0.0/8, ::1); may be empty."""
    specs = tuple(split_items(text))
    for spec in specs:
        try:
            parse_networks([spec])
        except ValueError:
            raise Invalid(f"{spec!r} is not an IP address or network (10.0.0.0/8)") from None
    return specs


def blacklist_entries(text: str, base: str) -> Tuple[str, ...]:
    """Domain names, IP addresses and networks the proxy refuses; may be empty."""
    entries = tuple(split_items(text))
    for entry in entries:
        try:
            parse_entry(entry)
        except ValueError as error:
            raise Invalid(str(error)) from None
    return entries


def ports(text: str, base: str) -> Tuple[int, ...]:
    """TCP ports from 1 to 65535; may be empty."""
    ports = []
    for item in split_items(text):
        if not DIGITS.fullmatch(item) or not 1 <= int(item) <= 65535:
            raise Invalid(f"{item!r} is not a port from 1 to 65535")
        ports.append(int(item))
    return tuple(ports)


_PORT_RANGE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


def port_ranges(text: str, base: str) -> Tuple[Tuple[int, int], ...]:
    """TCP ports and ranges such as ``80, 443, 1025-65535``, as (first, last) pairs; may be
    empty."""
    ranges = []
    for item in split_items(text):
        match = _PORT_RANGE.fullmatch(item)
        first = last = 0
        if match is not None:
            first = int(match.group(1))
            last = int(match.group(2) or match.group(1))
        if not 1 <= first <= last <= 65535:
            raise Invalid(f"{item!r} is not a port or range (such as 1025-65535) within"
                          " 1 to 65535")
        ranges.append((first, last))
    return tuple(ranges)


def checked_file(parse: Callable[[bytes], Any]) -> Callable[[str, str], str]:
    """A parser for an optional path (empty: none) to a file whose contents ``parse`` takes."""
    def check(text: str, base: str) -> str:
        if not text:
            return ""
        path = resolve_path(text, base)
        try:
            load(path, parse)
        except ValueError as error:
            raise Invalid(str(error)) from None
        return path
    return check


def path_prefixes(text: str, base: str) -> Tuple[str, ...]:
    """URL-path prefixes such as ``/private/``, as ProtectedPaths reads them; at least one."""
    prefixes = tuple(split_items(text))
    if not prefixes:
        raise Invalid("must list at least one URL path (/ protects the whole site)")
    try:
        ProtectedPaths(prefixes)
    except ValueError as error:
        raise Invalid(str(error)) from None
    return prefixes


def optional(parse: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    """``parse``, or None for an empty value."""
    def parse_optional(text: str, base: str) -> Any:
        return parse(text, base) if text else None
    return parse_optional


def url_path(text: str, base: str) -> str:
    """An absolute URL path such as ``/.nex/metrics``, matched as the request sends it:
    printable ASCII, no query, fragment or percent-encoding."""
    if not (text.startswith("/") and REQUEST_TARGET.fullmatch(text)) or any(
            char in text for char in "?#%"):
        raise Invalid("must be a URL path starting with /, without ?, # or %")
    return text


def realm(text: str, base: str) -> str:
    """The protection space named in the WWW-Authenticate challenge: printable ASCII."""
    try:
        challenge(text)
    except ValueError:
        raise Invalid("must be printable ASCII") from None
    return text


def header_value(text: str, base: str) -> str:
    """A value sent as one response header line; empty sends no header."""
    # A field value (no CR, LF or other controls) in ASCII; blanks around it are allowed.
    if not (text.isascii() and FIELD_VALUE.fullmatch(text.strip(" \t"))):
        raise Invalid("must be printable ASCII on one line")
    return text


def origins(text: str, base: str) -> Tuple[str, ...]:
    """Empty (no CORS), ``*``, or origins such as ``https://app.example`` (see nex.site.cors)."""
    items = split_items(text)
    if "*" in items:
        if len(items) > 1:
            raise Invalid("* allows every origin; list origins without it")
        return ("*",)
    origins: List[str] = []
    for item in items:
        try:
            origin = normalise_origin(item)
        except ValueError as error:
            raise Invalid(str(error)) from None
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def file_extension(text: str) -> str:
    """A file extension with its dot, lower-cased: ``.css``."""
    if not EXTENSION.fullmatch(text.lower()):
        raise Invalid(f"{text!r} is not a file extension such as .css")
    return text.lower()


def media_type(text: str) -> str:
    """``type/subtype`` without parameters (Nex adds ``charset=utf-8`` to text types)."""
    match = MEDIA_TYPE.fullmatch(text)
    if match is None or match.group("parameters"):
        raise Invalid(f"{text!r} is not a media type such as text/javascript")
    return text


def extension_map(value: Callable[[str], Any]) -> Callable[[str, str], Dict[str, Any]]:
    """A parser for ``.ext=value, .ext=value`` lists; ``value`` checks the right-hand side."""
    def parse(text: str, base: str) -> Dict[str, Any]:
        result: Dict[str, Any] = {}
        for item in split_items(text):
            match = EXTENSION_PAIR.fullmatch(item)
            if not match:
                raise Invalid(f"{item!r} is not .extension=value")
            extension = file_extension(match.group(1).strip(" \t"))
            if extension in result:
                raise Invalid(f"lists {extension} twice")
            result[extension] = value(match.group(2).strip(" \t"))
        return result
    return parse


def max_age(text: str) -> int:
    """Seconds a client may cache a file, 0 to 2^31."""
    if not DIGITS.fullmatch(text) or int(text) > MAX_AGE:
        raise Invalid(f"{text!r} is not a number of seconds from 0 to {MAX_AGE}")
    return int(text)


def resolve_path(text: str, base: str) -> str:
    """``text`` as an absolute path, relative ones taken from ``base``."""
    if not text or not text.isprintable():
        raise Invalid("must be a path")
    return os.path.realpath(os.path.join(base, text))


def folder(required: Optional[str]) -> Callable[[str, str], str]:
    """A parser for a readable folder that holds the file ``required`` (when given)."""
    def parse(text: str, base: str) -> str:
        path = resolve_path(text, base)
        if not os.path.exists(path):
            raise Invalid(f"folder {path} does not exist")
        if not os.path.isdir(path):
            raise Invalid(f"{path} is not a folder")
        if not os.access(path, os.R_OK | os.X_OK):
            raise Invalid(f"folder {path} is not readable")
        if required is not None:
            needed = os.path.join(path, required)
            if not os.path.isfile(needed) or not os.access(needed, os.R_OK):
                raise Invalid(f"required template {needed} is missing or unreadable")
        return path
    return parse


def template_folder(required: str, shipped: str) -> Callable[[str, str], str]:
    """A parser for a template folder (see :func:`folder`) that the file may leave shipped.

    ``shipped`` is the value the shipped settings.conf gives: when no folder of that name sits
    beside the settings file, it names the folder shipped with Nex, so a copy of the file
    works wherever it is put.  Any other value must name a folder that exists.
    """
    check = folder(required)

    def parse(text: str, base: str) -> str:
        if text == shipped and not os.path.exists(resolve_path(text, base)):
            text = shipped_path(shipped)
        return check(text, base)
    return parse


def optional_path(text: str, base: str) -> str:
    """An absolute path, or empty for none.  Symbolic links are kept, not resolved."""
    if not text:
        return ""
    if not text.isprintable():
        raise Invalid("must be a path")
    return os.path.abspath(os.path.join(base, text))


def tls_file(text: str, base: str) -> str:
    """A readable file, or empty for none.  Symbolic links are kept, not resolved, so a
    reload follows a link that renewal pointed at a new file."""
    path = optional_path(text, base)
    if not path:
        return ""
    if not os.path.exists(path):
        raise Invalid(f"file {path} does not exist")
    if not os.path.isfile(path):
        raise Invalid(f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise Invalid(f"file {path} is not readable")
    return path


def log_target(text: str, base: str) -> str:
    """``-`` for the standard stream, else a file Nex can append to or create."""
    if text == "-":
        return text
    path = resolve_path(text, base)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise Invalid(f"{path} is a folder, not a file")
    if not os.path.isdir(folder):
        raise Invalid(f"folder {folder} does not exist")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise Invalid(f"file {path} is not writable")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise Invalid(f"cannot create {path}: folder {folder} is not writable")
    return path


def shipped_path(name: str) -> str:
    """The file or folder ``name`` shipped with Nex: inside the package, else beside it in a
    checkout."""
    package = Path(nex.__file__).resolve().parent
    for candidate in (package / name, package.parent / name):
        if candidate.exists():
            return str(candidate)
    return str(package.parent / name)
