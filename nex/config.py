"""Settings: ``settings.conf`` plus the command line, validated once into a frozen Config.

:func:`load_config` reads the INI file, lays the command-line overrides on top, checks every
value against an exact grammar and every folder on disk, and returns a :class:`Config` whose
paths are absolute.  Anything wrong raises :class:`ConfigError` with a one-line message that
names where the value came from, e.g.
``settings.conf [server] port = 99999: must be an integer from 0 to 65535``.
"""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import nex
from nex.auth import ProtectedPaths, challenge, parse_users
from nex.blacklist import parse_entry, parse_file
from nex.cors import normalise_origin
from nex.forwarded import parse_networks
from nex.grammar import FIELD_VALUE, MEDIA_TYPE, is_hostname
from nex.hosts import HostValidator
from nex.watchedfile import load


@dataclass(frozen=True)
class Config:
    """Every setting Nex runs with, validated; paths are absolute."""

    # [server]
    bind: str = "127.0.0.1"
    port: int = 8080
    server_name: str = "localhost"
    document_root: str = ""
    error_pages: str = ""
    templates: str = ""
    index_files: Tuple[str, ...] = ("index.html", "index.htm")
    allowed_hosts: Tuple[str, ...] = ("*",)
    max_connections: int = 1024
    max_connections_per_client: int = 128
    backlog: int = 1024
    thread_stack_size: int = 512 * 1024
    workers: int = 1
    # [timeouts], seconds
    request_head_timeout: float = 10.0
    keep_alive_timeout: float = 15.0
    shutdown_grace: float = 10.0
    send_timeout: float = 30.0
    # [limits], bytes or counts
    max_request_line: int = 8192
    max_header_block: int = 65536
    max_header_count: int = 100
    max_request_body: int = 1024 * 1024
    max_ranges: int = 16
    min_send_rate: int = 1024
    # [files]
    listing: bool = True
    dotfiles: bool = False
    symlinks: str = "inside"
    file_cache_size: int = 32 * 1024 * 1024
    zip_download: bool = False
    max_zip_size: int = 1024 ** 3
    upload: bool = False
    max_upload_size: int = 100 * 1024 * 1024
    max_upload_files: int = 100
    upload_overwrite: bool = False
    # [caching]
    cache_control: str = "no-cache"
    max_age: Mapping[str, int] = field(default_factory=dict)
    # [compression]
    precompressed: bool = True
    gzip: bool = False
    gzip_min_size: int = 1024
    # [logging]
    access_log: str = "-"
    error_log: str = "-"
    log_colour: str = "auto"
    trusted_proxies: Tuple[str, ...] = ()
    log_buffer: int = 1024 * 1024
    # [auth]
    auth_users_file: str = ""
    auth_protect: Tuple[str, ...] = ("/",)
    auth_realm: str = "Nex"
    auth_max_failures_per_minute: int = 10
    # [cors]
    cors_allow_origins: Tuple[str, ...] = ()
    # [tls]: both paths, or neither (plain HTTP)
    tls_certificate: str = ""
    tls_key: str = ""
    # [proxy]
    proxy_enabled: bool = False
    proxy_allowed_clients: Tuple[str, ...] = ("127.0.0.1", "::1")
    proxy_blacklist: Tuple[str, ...] = ()
    proxy_blacklist_file: str = ""
    proxy_denied_destinations: Tuple[str, ...] = (
        "127.0.0.0/8", "::1", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::")
    proxy_connect_ports: Tuple[int, ...] = (443,)
    proxy_connect_timeout: float = 10.0
    proxy_upstream_timeout: float = 60.0
    proxy_tunnel_idle: float = 300.0
    proxy_auth: str = ""
    proxy_auth_failures_per_minute: int = 10
    proxy_via: bool = True
    # [mime]
    mime_types: Mapping[str, str] = field(default_factory=dict)


class ConfigError(Exception):
    """A setting is unknown, malformed or out of range; the message says where and why."""


class _Invalid(Exception):
    """Why one value was refused; the loader adds where the value came from."""


# --- value grammars ------------------------------------------------------------------------

_MAX_COUNT = 2 ** 31 - 1  # counts end up in C ints (listen backlog, thread limits)
_MAX_SIZE = 2 ** 31  # "2G", also the largest request body or upload Nex takes
_MAX_ZIP_SIZE = 2 ** 40  # "1024G": a folder download is streamed, never held
_MAX_SECONDS = 86400.0  # socket time-outs overflow the C timeval long before "forever"
_MAX_AGE = 2 ** 31  # RFC 9111 §1.2.2: caches cap delta-seconds at 2^31
_MAX_WORKERS = 256

_DIGITS = re.compile(r"[0-9]{1,12}")
_SIZE = re.compile(r"([0-9]{1,12})(?:([KMG])(?:iB)?)?")
_SIZE_UNITS = {None: 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
_SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
_BOOLEANS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}
_EXTENSION = re.compile(r"\.[a-z0-9_+-]{1,32}")
_EXTENSION_PAIR = re.compile(r"([^=]*)=([^=]*)")


def _integer(low: int, high: int) -> Callable[[str, str], int]:
    """A parser for a decimal integer from ``low`` to ``high``."""
    def parse(text: str, base: str) -> int:
        if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
            raise _Invalid(f"must be an integer from {low} to {high}")
        return int(text)
    return parse


def _bytes(text: str) -> int:
    """Digits with an optional binary unit: ``65536``, ``64K``, ``64KiB``, ``1M``, ``2G``."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise _Invalid("must be a number of bytes such as 65536, 64K or 1M"
                       " (K, M, G or KiB, MiB, GiB: powers of 1024)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def _size(low: int, high: int = _MAX_SIZE) -> Callable[[str, str], int]:
    """A parser for a byte size from ``low`` up to ``high`` (a whole number of G)."""
    def parse(text: str, base: str) -> int:
        size = _bytes(text)
        if not low <= size <= high:
            raise _Invalid(f"must be from {low} to {high} bytes ({high // 1024 ** 3}G)")
        return size
    return parse


def _stack_size(text: str, base: str) -> int:
    """0 for the platform default, else whole 4K pages from 64K up (threading.stack_size)."""
    size = _bytes(text)
    if size != 0 and not (64 * 1024 <= size <= _MAX_SIZE and size % 4096 == 0):
        raise _Invalid("must be 0 (the platform default) or a multiple of 4K from 64K to 2G")
    return size


def _workers(text: str, base: str) -> int:
    """1 to 256 worker processes, or ``auto``: one per CPU this process may run on."""
    if text.lower() == "auto":
        return min(_MAX_WORKERS, _cpu_count())
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= _MAX_WORKERS:
        raise _Invalid(f"must be auto or an integer from 1 to {_MAX_WORKERS}")
    return int(text)


def _cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _seconds(text: str, base: str) -> float:
    """A duration in seconds, decimals allowed, above 0 and at most a day."""
    if not _SECONDS.fullmatch(text) or not 0 < float(text) <= _MAX_SECONDS:
        raise _Invalid("must be a number of seconds above 0 and at most 86400, such as 10 or 2.5")
    return float(text)


def _boolean(text: str, base: str) -> bool:
    """yes/no, true/false or on/off, in any letter case."""
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise _Invalid("must be yes, no, true, false, on or off") from None


def _choice(*options: str) -> Callable[[str, str], str]:
    """A parser for one word out of ``options``, in any letter case."""
    def parse(text: str, base: str) -> str:
        if text.lower() not in options:
            raise _Invalid(f"must be one of {', '.join(options)}")
        return text.lower()
    return parse


def _is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 literal (no brackets)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _bind(text: str, base: str) -> str:
    """The address to listen on: an IP literal or ``localhost``."""
    if text != "localhost" and not _is_ip(text):
        raise _Invalid("must be an IPv4 or IPv6 address (without brackets) or localhost")
    return text


def _server_name(text: str, base: str) -> str:
    """The name shown on generated pages: a host name or an IP literal."""
    if not (is_hostname(text.lower()) or _is_ip(text)):
        raise _Invalid("must be a host name or an IP address")
    return text


def _split(text: str) -> List[str]:
    """Comma-separated items, blanks around commas ignored; an empty text is no items."""
    if not text:
        return []
    items = [item.strip(" \t") for item in text.split(",")]
    if "" in items:
        raise _Invalid("has an empty item between commas")
    return items


def _file_names(text: str, base: str) -> Tuple[str, ...]:
    """Index file names: plain names, never a path that could leave the folder."""
    names = _split(text)
    for name in names:
        if name in (".", "..") or not name.isprintable() or "/" in name or "\\" in name:
            raise _Invalid(f"{name!r} is not a plain file name (no /, \\ or ..)")
    return tuple(names)


def _host_patterns(text: str, base: str) -> Tuple[str, ...]:
    """Allowed Host patterns in the grammar HostValidator documents; at least one."""
    patterns = tuple(_split(text))
    if not patterns:
        raise _Invalid("must list at least one host pattern (* allows any host)")
    for pattern in patterns:
        try:
            HostValidator([pattern])
        except ValueError:
            raise _Invalid(f"{pattern!r} is not *, *.example.com, a host name or an IP address"
                           " (each optionally with :PORT)") from None
    return patterns


def _networks(text: str, base: str) -> Tuple[str, ...]:
    """IP addresses or CIDR blocks (10.0.0.0/8, ::1); may be empty."""
    specs = tuple(_split(text))
    for spec in specs:
        try:
            parse_networks([spec])
        except ValueError:
            raise _Invalid(f"{spec!r} is not an IP address or network (10.0.0.0/8)") from None
    return specs


def _blacklist_entries(text: str, base: str) -> Tuple[str, ...]:
    """Domain names, IP addresses and networks the proxy refuses; may be empty."""
    entries = tuple(_split(text))
    for entry in entries:
        try:
            parse_entry(entry)
        except ValueError as error:
            raise _Invalid(str(error)) from None
    return entries


def _ports(text: str, base: str) -> Tuple[int, ...]:
    """TCP ports from 1 to 65535; may be empty."""
    ports = []
    for item in _split(text):
        if not _DIGITS.fullmatch(item) or not 1 <= int(item) <= 65535:
            raise _Invalid(f"{item!r} is not a port from 1 to 65535")
        ports.append(int(item))
    return tuple(ports)


def _checked_file(parse: Callable[[bytes], Any]) -> Callable[[str, str], str]:
    """A parser for an optional path (empty: none) to a file whose contents ``parse`` takes."""
    def check(text: str, base: str) -> str:
        if not text:
            return ""
        path = _resolve(text, base)
        try:
            load(path, parse)
        except ValueError as error:
            raise _Invalid(str(error)) from None
        return path
    return check


def _path_prefixes(text: str, base: str) -> Tuple[str, ...]:
    """URL-path prefixes such as ``/private/``, as ProtectedPaths reads them; at least one."""
    prefixes = tuple(_split(text))
    if not prefixes:
        raise _Invalid("must list at least one URL path (/ protects the whole site)")
    try:
        ProtectedPaths(prefixes)
    except ValueError as error:
        raise _Invalid(str(error)) from None
    return prefixes


def _realm(text: str, base: str) -> str:
    """The protection space named in the WWW-Authenticate challenge: printable ASCII."""
    try:
        challenge(text)
    except ValueError:
        raise _Invalid("must be printable ASCII") from None
    return text


def _header_value(text: str, base: str) -> str:
    """A value sent as one response header line; empty sends no header."""
    # A field value (no CR, LF or other controls) in ASCII; blanks around it are allowed.
    if not (text.isascii() and FIELD_VALUE.fullmatch(text.strip(" \t"))):
        raise _Invalid("must be printable ASCII on one line")
    return text


def _origins(text: str, base: str) -> Tuple[str, ...]:
    """Empty (no CORS), ``*``, or origins such as ``https://app.example`` (see nex.cors)."""
    items = _split(text)
    if "*" in items:
        if len(items) > 1:
            raise _Invalid("* allows every origin; list origins without it")
        return ("*",)
    origins: List[str] = []
    for item in items:
        try:
            origin = normalise_origin(item)
        except ValueError as error:
            raise _Invalid(str(error)) from None
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _extension(text: str) -> str:
    """A file extension with its dot, lower-cased: ``.css``."""
    if not _EXTENSION.fullmatch(text.lower()):
        raise _Invalid(f"{text!r} is not a file extension such as .css")
    return text.lower()


def _media_type(text: str) -> str:
    """``type/subtype`` without parameters (Nex adds ``charset=utf-8`` to text types)."""
    match = MEDIA_TYPE.fullmatch(text)
    if match is None or match.group("parameters"):
        raise _Invalid(f"{text!r} is not a media type such as text/javascript")
    return text


def _extension_map(value: Callable[[str], Any]) -> Callable[[str, str], Dict[str, Any]]:
    """A parser for ``.ext=value, .ext=value`` lists; ``value`` checks the right-hand side."""
    def parse(text: str, base: str) -> Dict[str, Any]:
        result: Dict[str, Any] = {}
        for item in _split(text):
            match = _EXTENSION_PAIR.fullmatch(item)
            if not match:
                raise _Invalid(f"{item!r} is not .extension=value")
            extension = _extension(match.group(1).strip(" \t"))
            if extension in result:
                raise _Invalid(f"lists {extension} twice")
            result[extension] = value(match.group(2).strip(" \t"))
        return result
    return parse


def _max_age(text: str) -> int:
    """Seconds a client may cache a file, 0 to 2^31."""
    if not _DIGITS.fullmatch(text) or int(text) > _MAX_AGE:
        raise _Invalid(f"{text!r} is not a number of seconds from 0 to {_MAX_AGE}")
    return int(text)


def _resolve(text: str, base: str) -> str:
    """``text`` as an absolute path, relative ones taken from ``base``."""
    if not text or not text.isprintable():
        raise _Invalid("must be a path")
    return os.path.realpath(os.path.join(base, text))


def _folder(required: Optional[str]) -> Callable[[str, str], str]:
    """A parser for a readable folder that holds the file ``required`` (when given)."""
    def parse(text: str, base: str) -> str:
        path = _resolve(text, base)
        if not os.path.exists(path):
            raise _Invalid(f"folder {path} does not exist")
        if not os.path.isdir(path):
            raise _Invalid(f"{path} is not a folder")
        if not os.access(path, os.R_OK | os.X_OK):
            raise _Invalid(f"folder {path} is not readable")
        if required is not None:
            needed = os.path.join(path, required)
            if not os.path.isfile(needed) or not os.access(needed, os.R_OK):
                raise _Invalid(f"required template {needed} is missing or unreadable")
        return path
    return parse


def _template_folder(required: str, shipped: str) -> Callable[[str, str], str]:
    """A parser for a template folder (see :func:`_folder`) that the file may leave shipped.

    ``shipped`` is the value the shipped settings.conf gives: when no folder of that name sits
    beside the settings file, it names the folder shipped with Nex, so a copy of the file
    works wherever it is put.  Any other value must name a folder that exists.
    """
    check = _folder(required)

    def parse(text: str, base: str) -> str:
        if text == shipped and not os.path.exists(_resolve(text, base)):
            text = _shipped(shipped)
        return check(text, base)
    return parse


def _optional_path(text: str, base: str) -> str:
    """An absolute path, or empty for none.  Symbolic links are kept, not resolved."""
    if not text:
        return ""
    if not text.isprintable():
        raise _Invalid("must be a path")
    return os.path.abspath(os.path.join(base, text))


def _tls_file(text: str, base: str) -> str:
    """A readable file, or empty for none.  Symbolic links are kept, not resolved, so a
    reload follows a link that renewal pointed at a new file."""
    path = _optional_path(text, base)
    if not path:
        return ""
    if not os.path.exists(path):
        raise _Invalid(f"file {path} does not exist")
    if not os.path.isfile(path):
        raise _Invalid(f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise _Invalid(f"file {path} is not readable")
    return path


def _log_target(text: str, base: str) -> str:
    """``-`` for the standard stream, else a file Nex can append to or create."""
    if text == "-":
        return text
    path = _resolve(text, base)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise _Invalid(f"{path} is a folder, not a file")
    if not os.path.isdir(folder):
        raise _Invalid(f"folder {folder} does not exist")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise _Invalid(f"file {path} is not writable")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise _Invalid(f"cannot create {path}: folder {folder} is not writable")
    return path


# --- the settings table --------------------------------------------------------------------

@dataclass(frozen=True)
class _Setting:
    """One key of settings.conf: where it lives, which Config field it fills, how it parses."""

    section: str
    key: str
    field: str
    parse: Callable[[str, str], Any]
    #: The check of the text alone, for a file value a flag replaces: a parse that looks at
    #: the file system must not look for a path the flag leaves unused.
    shape: Callable[[str, str], Any]


def _setting(section: str, key: str, parse: Callable[[str, str], Any],
             field_name: Optional[str] = None, on_disk: bool = False,
             shape: Optional[Callable[[str, str], Any]] = None) -> _Setting:
    """A table row; ``field_name`` defaults to ``key``.  ``on_disk`` marks a parse that looks
    at the file system; ``shape`` then checks the text alone (default: a path)."""
    if shape is None:
        shape = _resolve if on_disk else parse
    return _Setting(section, key, field_name or key, parse, shape)


_SETTINGS = (
    _setting("server", "bind", _bind),
    _setting("server", "port", _integer(0, 65535)),
    _setting("server", "server_name", _server_name),
    _setting("server", "document_root", _folder(None), on_disk=True),
    _setting("server", "error_pages", _template_folder("error.html", "error_pages"),
             on_disk=True),
    _setting("server", "templates", _template_folder("dir.html", "other_templates"),
             on_disk=True),
    _setting("server", "index_files", _file_names),
    _setting("server", "allowed_hosts", _host_patterns),
    _setting("server", "max_connections", _integer(1, _MAX_COUNT)),
    _setting("server", "max_connections_per_client", _integer(1, _MAX_COUNT)),
    _setting("server", "backlog", _integer(1, _MAX_COUNT)),
    _setting("server", "thread_stack_size", _stack_size),
    _setting("server", "workers", _workers),
    _setting("timeouts", "request_head", _seconds, "request_head_timeout"),
    _setting("timeouts", "keep_alive", _seconds, "keep_alive_timeout"),
    _setting("timeouts", "shutdown_grace", _seconds),
    _setting("timeouts", "send", _seconds, "send_timeout"),
    _setting("limits", "max_request_line", _size(1)),
    _setting("limits", "max_header_block", _size(1)),
    _setting("limits", "max_header_count", _integer(1, _MAX_COUNT)),
    _setting("limits", "max_request_body", _size(1)),
    _setting("limits", "max_ranges", _integer(1, _MAX_COUNT)),
    _setting("limits", "min_send_rate", _size(0)),
    _setting("files", "listing", _boolean),
    _setting("files", "dotfiles", _boolean),
    _setting("files", "symlinks", _choice("never", "inside", "always")),
    _setting("files", "file_cache_size", _size(0)),
    _setting("files", "zip_download", _boolean),
    _setting("files", "max_zip_size", _size(1, _MAX_ZIP_SIZE)),
    _setting("files", "upload", _boolean),
    _setting("files", "max_upload_size", _size(1)),
    _setting("files", "max_upload_files", _integer(1, _MAX_COUNT)),
    _setting("files", "upload_overwrite", _boolean),
    _setting("caching", "cache_control", _header_value),
    _setting("caching", "max_age", _extension_map(_max_age)),
    _setting("compression", "precompressed", _boolean),
    _setting("compression", "gzip", _boolean),
    _setting("compression", "gzip_min_size", _size(0)),
    _setting("logging", "access_log", _log_target, on_disk=True),
    _setting("logging", "error_log", _log_target, on_disk=True),
    _setting("logging", "log_colour", _choice("auto", "always", "never")),
    _setting("logging", "trusted_proxies", _networks),
    _setting("logging", "log_buffer", _size(4096)),
    _setting("auth", "users_file", _checked_file(parse_users), "auth_users_file", on_disk=True),
    _setting("auth", "protect", _path_prefixes, "auth_protect"),
    _setting("auth", "realm", _realm, "auth_realm"),
    _setting("auth", "max_failures_per_minute", _integer(0, _MAX_COUNT),
             "auth_max_failures_per_minute"),
    _setting("cors", "allow_origins", _origins, "cors_allow_origins"),
    _setting("tls", "certificate", _tls_file, "tls_certificate", shape=_optional_path),
    _setting("tls", "key", _tls_file, "tls_key", shape=_optional_path),
    _setting("proxy", "enabled", _boolean, "proxy_enabled"),
    _setting("proxy", "allowed_clients", _networks, "proxy_allowed_clients"),
    _setting("proxy", "blacklist", _blacklist_entries, "proxy_blacklist"),
    _setting("proxy", "blacklist_file", _checked_file(parse_file), "proxy_blacklist_file",
             on_disk=True),
    _setting("proxy", "denied_destinations", _networks, "proxy_denied_destinations"),
    _setting("proxy", "connect_ports", _ports, "proxy_connect_ports"),
    _setting("proxy", "connect_timeout", _seconds, "proxy_connect_timeout"),
    _setting("proxy", "upstream_timeout", _seconds, "proxy_upstream_timeout"),
    _setting("proxy", "tunnel_idle", _seconds, "proxy_tunnel_idle"),
    _setting("proxy", "auth", _checked_file(parse_users), "proxy_auth", on_disk=True),
    _setting("proxy", "auth_failures_per_minute", _integer(0, _MAX_COUNT),
             "proxy_auth_failures_per_minute"),
    _setting("proxy", "via", _boolean, "proxy_via"),
    # [mime] has one key per extension; the command line gives ".ext=type, ..." instead.
    _setting("mime", "*", _extension_map(_media_type), "mime_types"),
)
_BY_FIELD = {setting.field: setting for setting in _SETTINGS}
_SECTIONS = tuple(dict.fromkeys(setting.section for setting in _SETTINGS))

# Command-line flags whose name is not the field's name with dashes.
_FLAGS = {"document_root": "--root", "auth_users_file": "--auth-file",
          "cors_allow_origins": "--cors", "zip_download": "--zip",
          "tls_certificate": "--tls-cert", "tls_key": "--tls-key", "proxy_enabled": "--proxy"}


# --- loading -------------------------------------------------------------------------------

def load_config(path: Union[str, os.PathLike, None],
                overrides: Optional[Mapping[str, Any]] = None) -> Config:
    """Read ``path`` (None: built-in defaults), apply ``overrides``, validate, build a Config.

    ``overrides`` maps Config field names to values from the command line, as text or already
    typed; they win over the file, which must still be well-formed, and relative paths among
    them resolve against the current directory.  Relative paths in the file resolve against
    the file's folder.  A key the file leaves out keeps its built-in default; the built-in
    document root is the current directory and the error pages and templates are the folders
    shipped with Nex.  The shipped file's own values for those folders (``error_pages``,
    ``other_templates``) also mean the shipped folders when the file's folder lacks them.
    """
    overrides = dict(overrides or {})
    for name in overrides:
        if name not in _BY_FIELD:
            raise ConfigError(f"unknown setting {name!r}")
    sections: Dict[str, Dict[str, str]] = {}
    shown_path = ""
    base = os.getcwd()
    if path is not None:
        shown_path = _show(os.fspath(path))
        sections = _read(os.fspath(path), shown_path)
        base = os.path.dirname(os.path.abspath(path))
    builtin = {"document_root": os.getcwd(), "error_pages": _shipped("error_pages"),
               "templates": _shipped("other_templates")}
    values: Dict[str, Any] = {}
    for setting in _SETTINGS:
        replaced = setting.field in overrides
        if setting.section == "mime" and "mime" in sections:
            values[setting.field] = _mime_section(sections["mime"], shown_path)
        elif setting.key in sections.get(setting.section, {}):
            # A flag replaces a file value, yet the file must still be well-formed; only a
            # path the flag leaves unused is not looked for on disk.
            text = sections[setting.section][setting.key]
            parse = setting.shape if replaced and text else setting.parse
            label = f"{shown_path} [{setting.section}] {setting.key} = {_show(text)}"
            values[setting.field] = _parse(parse, text, base, label)
        if replaced:
            label = _flag(setting.field)
            text = _override_text(overrides[setting.field], label)
            values[setting.field] = _parse(setting.parse, text, os.getcwd(),
                                           f"{label} {_show(text)}")
        elif setting.field not in values and setting.field in builtin:
            text = builtin[setting.field]
            label = f"[{setting.section}] {setting.key} = {_show(text)} (built-in default)"
            values[setting.field] = _parse(setting.parse, text, base, label)
    if bool(values.get("tls_certificate")) != bool(values.get("tls_key")):
        given, missing = (("certificate", "key") if values.get("tls_certificate")
                          else ("key", "certificate"))
        raise ConfigError(f"[tls] {given} is set but {missing} is not: HTTPS needs both"
                          " (in settings.conf, or --tls-cert and --tls-key)")
    return Config(**values)


def _read(path: str, shown: str) -> Dict[str, Dict[str, str]]:
    """The sections of the INI file at ``path``, checked for unknown sections and keys."""
    parser = configparser.ConfigParser(interpolation=None, default_section="")
    parser.optionxform = str  # type: ignore[assignment]  # keys are case-sensitive
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{shown}: settings file does not exist") from None
    except OSError as error:
        raise ConfigError(f"{shown}: cannot read settings file ({error.strerror})") from None
    try:
        parser.read_string(data.decode("utf-8-sig"), source=path)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"{shown} line {line}: not UTF-8 text") from None
    except configparser.Error as error:
        raise ConfigError(_parse_failure(error, shown)) from None
    sections = {name: dict(parser.items(name)) for name in parser.sections()}
    for section, keys in sections.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{shown} [{_show(section)}]: unknown section"
                              f" (sections: {', '.join(_SECTIONS)})")
        if section == "mime":
            continue
        known = [setting.key for setting in _SETTINGS if setting.section == section]
        for key, text in keys.items():
            if key not in known:
                guess = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {guess[0]}?)" if guess else ""
                raise ConfigError(f"{shown} [{section}] {_show(key)} = {_show(text)}:"
                                  f" unknown setting{hint}")
    return sections


def _parse_failure(error: configparser.Error, shown: str) -> str:
    """A one-line message for an INI syntax error."""
    if isinstance(error, configparser.MissingSectionHeaderError):
        return f"{shown} line {error.lineno}: expected a [section] header first"
    if isinstance(error, configparser.DuplicateSectionError):
        return f"{shown} line {error.lineno}: section [{error.section}] appears twice"
    if isinstance(error, configparser.DuplicateOptionError):
        return f"{shown} line {error.lineno}: [{error.section}] {error.option} is set twice"
    if isinstance(error, configparser.ParsingError):
        return f"{shown} line {error.errors[0][0]}: expected key = value or a [section] header"
    return f"{shown}: {error.message.splitlines()[0]}"


def _mime_section(entries: Mapping[str, str], shown: str) -> Dict[str, str]:
    """The [mime] section: each key an extension, each value a media type."""
    result: Dict[str, str] = {}
    for key, text in entries.items():
        label = f"{shown} [mime] {_show(key)} = {_show(text)}"
        try:
            extension = _extension(key)
            if extension in result:
                raise _Invalid(f"{extension} is set twice")
            result[extension] = _media_type(text)
        except _Invalid as error:
            raise ConfigError(f"{label}: {error}") from None
    return result


def _parse(parse: Callable[[str, str], Any], text: str, base: str, label: str) -> Any:
    """``parse(text, base)``, turning a refusal into a ConfigError that starts with ``label``."""
    try:
        return parse(text, base)
    except _Invalid as error:
        raise ConfigError(f"{label}: {error}") from None


def _override_text(value: Any, label: str) -> str:
    """The settings-file spelling of an override, so it passes the very same checks."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, "f").rstrip("0").rstrip(".")
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    raise ConfigError(f"{label} {value!r}: unsupported value type {type(value).__name__}")


def _flag(name: str) -> str:
    """The command-line flag that sets the field ``name``."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _show(text: str) -> str:
    """``text`` as written, or quoted when empty or holding control characters."""
    return text if text and text.isprintable() else repr(text)


def shipped_settings() -> str:
    """The path of the settings.conf shipped with Nex: every key, its default, its comment."""
    return _shipped("settings.conf")


def _shipped(name: str) -> str:
    """The file or folder ``name`` shipped with Nex: inside the package, else beside it in a
    checkout."""
    package = Path(nex.__file__).resolve().parent
    for candidate in (package / name, package.parent / name):
        if candidate.exists():
            return str(candidate)
    return str(package.parent / name)
