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
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from nex.http.framing import HeadLimits
from nex.site.passwords import parse_users
from nex.proxy.blacklist import parse_file
from nex.proxy.forwarding import FORWARDED_FOR_MODES
from nex.process import values


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
    proxy_protocol: str = "no"
    # [timeouts], seconds
    request_head_timeout: float = 10.0
    keep_alive_timeout: float = 15.0
    shutdown_grace: float = 10.0
    send_timeout: float = 30.0
    body_min_rate: int = 500
    body_grace: float = 10.0
    # [limits], bytes or counts
    max_request_line: int = HeadLimits().request_line
    max_header_block: int = HeadLimits().header_block
    max_header_count: int = HeadLimits().header_count
    max_request_body: int = 1024 * 1024
    max_ranges: int = 16
    min_send_rate: int = 1024
    # [files]
    listing: bool = True
    dotfiles: bool = False
    symlinks: str = "inside"
    file_cache_size: int = 32 * 1024 * 1024
    open_file_cache: int = 64
    open_file_cache_idle: float = 20.0
    zip_download: bool = False
    max_zip_size: int = 1024 ** 3
    max_concurrent_zips: int = 4
    upload: bool = False
    max_upload_size: int = 100 * 1024 * 1024
    max_upload_files: int = 100
    upload_overwrite: bool = False
    active_content: str = "auto"
    max_search_entries: int = 10000
    search_timeout: float = 2.0
    upload_expiry: int = 24 * 3600
    allow_delete: bool = False
    allow_rename: bool = False
    webdav: str = "no"
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
    log_format: str = "combined"
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
    tls_hsts: int = 0
    # [proxy]
    proxy_enabled: bool = False
    proxy_allowed_clients: Tuple[str, ...] = ("127.0.0.1", "::1")
    proxy_blacklist: Tuple[str, ...] = ()
    proxy_blacklist_file: str = ""
    proxy_denied_destinations: Tuple[str, ...] = (
        "127.0.0.0/8", "::1", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::")
    proxy_connect_ports: Tuple[int, ...] = (443,)
    proxy_http_ports: Tuple[Tuple[int, int], ...] = ((80, 80), (443, 443), (1025, 65535))
    proxy_allowed_destinations: Tuple[str, ...] = ()
    proxy_connect_timeout: float = 10.0
    proxy_upstream_timeout: float = 60.0
    proxy_tunnel_idle: float = 300.0
    proxy_dns_cache_ttl: float = 30.0
    proxy_dns_timeout: float = 5.0
    proxy_forwarded_for: str = "no"
    proxy_parent: str = ""
    proxy_parent_bypass: Tuple[str, ...] = ()
    proxy_pac: bool = False
    proxy_auth: str = ""
    proxy_auth_failures_per_minute: int = 10
    proxy_via: bool = True
    # [metrics]
    metrics_enabled: bool = False
    metrics_path: str = "/.nex/metrics"
    metrics_allowed_clients: Tuple[str, ...] = ("127.0.0.0/8", "::1")
    metrics_bind: str = "127.0.0.1"
    metrics_port: Optional[int] = None
    # [mime]
    mime_types: Mapping[str, str] = field(default_factory=dict)


class ConfigError(Exception):
    """A setting is unknown, malformed or out of range; the message says where and why."""


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
        shape = values.resolve_path if on_disk else parse
    return _Setting(section, key, field_name or key, parse, shape)


_SETTINGS = (
    _setting("server", "bind", values.bind),
    _setting("server", "port", values.integer(0, 65535)),
    _setting("server", "server_name", values.server_name),
    _setting("server", "document_root", values.folder(None), on_disk=True),
    _setting("server", "error_pages", values.template_folder("error.html", "error_pages"),
             on_disk=True),
    _setting("server", "templates", values.template_folder("dir.html", "other_templates"),
             on_disk=True),
    _setting("server", "index_files", values.file_names),
    _setting("server", "allowed_hosts", values.host_patterns),
    _setting("server", "max_connections", values.integer(1, values.MAX_COUNT)),
    _setting("server", "max_connections_per_client", values.integer(1, values.MAX_COUNT)),
    _setting("server", "backlog", values.integer(1, values.MAX_COUNT)),
    _setting("server", "thread_stack_size", values.stack_size),
    _setting("server", "workers", values.workers),
    _setting("server", "proxy_protocol", values.choice("no", "v1", "v2", "any")),
    _setting("timeouts", "request_head", values.seconds, "request_head_timeout"),
    _setting("timeouts", "keep_alive", values.seconds, "keep_alive_timeout"),
    _setting("timeouts", "shutdown_grace", values.seconds),
    _setting("timeouts", "send", values.seconds, "send_timeout"),
    _setting("timeouts", "body_min_rate", values.size(0)),
    _setting("timeouts", "body_grace", values.seconds),
    _setting("limits", "max_request_line", values.size(1)),
    _setting("limits", "max_header_block", values.size(1)),
    _setting("limits", "max_header_count", values.integer(1, values.MAX_COUNT)),
    _setting("limits", "max_request_body", values.size(1)),
    _setting("limits", "max_ranges", values.integer(1, values.MAX_COUNT)),
    _setting("limits", "min_send_rate", values.size(0)),
    _setting("files", "listing", values.boolean),
    _setting("files", "dotfiles", values.boolean),
    _setting("files", "symlinks", values.choice("never", "inside", "always")),
    _setting("files", "file_cache_size", values.size(0)),
    _setting("files", "open_file_cache", values.integer(0, 65536)),
    _setting("files", "open_file_cache_idle", values.seconds),
    _setting("files", "zip_download", values.boolean),
    _setting("files", "max_zip_size", values.size(1, values.MAX_ZIP_SIZE)),
    _setting("files", "max_concurrent_zips", values.integer(1, values.MAX_COUNT)),
    _setting("files", "upload", values.boolean),
    _setting("files", "max_upload_size", values.size(1)),
    _setting("files", "max_upload_files", values.integer(1, values.MAX_COUNT)),
    _setting("files", "upload_overwrite", values.boolean),
    _setting("files", "active_content", values.choice("auto", "sandbox")),
    _setting("files", "max_search_entries", values.integer(0, values.MAX_COUNT)),
    _setting("files", "search_timeout", values.seconds),
    _setting("files", "upload_expiry", values.lifetime),
    _setting("files", "allow_delete", values.boolean),
    _setting("files", "allow_rename", values.boolean),
    _setting("files", "webdav", values.choice("no", "read", "write")),
    _setting("caching", "cache_control", values.header_value),
    _setting("caching", "max_age", values.extension_map(values.max_age)),
    _setting("compression", "precompressed", values.boolean),
    _setting("compression", "gzip", values.boolean),
    _setting("compression", "gzip_min_size", values.size(0)),
    _setting("logging", "access_log", values.log_target, on_disk=True),
    _setting("logging", "error_log", values.log_target, on_disk=True),
    _setting("logging", "log_colour", values.choice("auto", "always", "never")),
    _setting("logging", "format", values.choice("combined", "json"), "log_format"),
    _setting("logging", "trusted_proxies", values.networks),
    _setting("logging", "log_buffer", values.size(4096)),
    _setting("auth", "users_file", values.checked_file(parse_users), "auth_users_file",
             on_disk=True),
    _setting("auth", "protect", values.path_prefixes, "auth_protect"),
    _setting("auth", "realm", values.realm, "auth_realm"),
    _setting("auth", "max_failures_per_minute", values.integer(0, values.MAX_COUNT),
             "auth_max_failures_per_minute"),
    _setting("cors", "allow_origins", values.origins, "cors_allow_origins"),
    _setting("tls", "certificate", values.tls_file, "tls_certificate", shape=values.optional_path),
    _setting("tls", "key", values.tls_file, "tls_key", shape=values.optional_path),
    _setting("tls", "hsts", values.integer(0, values.MAX_AGE), "tls_hsts"),
    _setting("proxy", "enabled", values.boolean, "proxy_enabled"),
    _setting("proxy", "allowed_clients", values.networks, "proxy_allowed_clients"),
    _setting("proxy", "blacklist", values.blacklist_entries, "proxy_blacklist"),
    _setting("proxy", "blacklist_file", values.checked_file(parse_file), "proxy_blacklist_file",
             on_disk=True),
    _setting("proxy", "denied_destinations", values.networks, "proxy_denied_destinations"),
    _setting("proxy", "connect_ports", values.ports, "proxy_connect_ports"),
    _setting("proxy", "http_ports", values.port_ranges, "proxy_http_ports"),
    _setting("proxy", "allowed_destinations", values.blacklist_entries,
             "proxy_allowed_destinations"),
    _setting("proxy", "connect_timeout", values.seconds, "proxy_connect_timeout"),
    _setting("proxy", "upstream_timeout", values.seconds, "proxy_upstream_timeout"),
    _setting("proxy", "tunnel_idle", values.seconds, "proxy_tunnel_idle"),
    _setting("proxy", "dns_cache_ttl", values.seconds_or_off, "proxy_dns_cache_ttl"),
    _setting("proxy", "dns_timeout", values.seconds, "proxy_dns_timeout"),
    _setting("proxy", "forwarded_for", values.choice(*FORWARDED_FOR_MODES),
             "proxy_forwarded_for"),
    _setting("proxy", "parent", values.parent_proxy, "proxy_parent"),
    _setting("proxy", "parent_bypass", values.blacklist_entries, "proxy_parent_bypass"),
    _setting("proxy", "pac", values.boolean, "proxy_pac"),
    _setting("proxy", "auth", values.checked_file(parse_users), "proxy_auth", on_disk=True),
    _setting("proxy", "auth_failures_per_minute", values.integer(0, values.MAX_COUNT),
             "proxy_auth_failures_per_minute"),
    _setting("proxy", "via", values.boolean, "proxy_via"),
    _setting("metrics", "enabled", values.boolean, "metrics_enabled"),
    _setting("metrics", "path", values.url_path, "metrics_path"),
    _setting("metrics", "allowed_clients", values.networks, "metrics_allowed_clients"),
    _setting("metrics", "bind", values.bind, "metrics_bind"),
    _setting("metrics", "port", values.optional(values.integer(0, 65535)), "metrics_port"),
    # [mime] has one key per extension; the command line gives ".ext=type, ..." instead.
    _setting("mime", "*", values.extension_map(values.media_type), "mime_types"),
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
    builtin = {"document_root": os.getcwd(), "error_pages": values.shipped_path("error_pages"),
               "templates": values.shipped_path("other_templates")}
    typed: Dict[str, Any] = {}
    for setting in _SETTINGS:
        replaced = setting.field in overrides
        if setting.section == "mime" and "mime" in sections:
            typed[setting.field] = _mime_section(sections["mime"], shown_path)
        elif setting.key in sections.get(setting.section, {}):
            # A flag replaces a file value, yet the file must still be well-formed; only a
            # path the flag leaves unused is not looked for on disk.
            text = sections[setting.section][setting.key]
            parse = setting.shape if replaced and text else setting.parse
            label = f"{shown_path} [{setting.section}] {setting.key} = {_show(text)}"
            typed[setting.field] = _parse(parse, text, base, label)
        if replaced:
            label = _flag(setting.field)
            text = _override_text(overrides[setting.field], label)
            typed[setting.field] = _parse(setting.parse, text, os.getcwd(),
                                           f"{label} {_show(text)}")
        elif setting.field not in typed and setting.field in builtin:
            text = builtin[setting.field]
            label = f"[{setting.section}] {setting.key} = {_show(text)} (built-in default)"
            typed[setting.field] = _parse(setting.parse, text, base, label)
    if bool(typed.get("tls_certificate")) != bool(typed.get("tls_key")):
        given, missing = (("certificate", "key") if typed.get("tls_certificate")
                          else ("key", "certificate"))
        raise ConfigError(f"[tls] {given} is set but {missing} is not: HTTPS needs both"
                          " (in settings.conf, or --tls-cert and --tls-key)")
    if typed.get("proxy_protocol", "no") != "no" and not typed.get("trusted_proxies"):
        raise ConfigError(f"[server] proxy_protocol = {typed['proxy_protocol']} needs [logging]"
                          " trusted_proxies: the addresses of the load balancers that send it")
    return Config(**typed)


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
            extension = values.file_extension(key)
            if extension in result:
                raise values.Invalid(f"{extension} is set twice")
            result[extension] = values.media_type(text)
        except values.Invalid as error:
            raise ConfigError(f"{label}: {error}") from None
    return result


def _parse(parse: Callable[[str, str], Any], text: str, base: str, label: str) -> Any:
    """``parse(text, base)``, turning a refusal into a ConfigError that starts with ``label``."""
    try:
        return parse(text, base)
    except values.Invalid as error:
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
    return values.shipped_path("settings.conf")
