"""Tests for nex.process.config: the settings.conf grammar, overrides, paths and built-in
defaults."""

from __future__ import annotations

import configparser
import dataclasses
import os
import shutil
import tempfile
import unittest
from pathlib import Path
from typing import Dict, Mapping, Tuple
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from nex.site.passwords import hash_password
from nex.process.config import Config, ConfigError, load_config
from tests.support.settings import (SHIPPED_SETTINGS, CommandLineCase, WorkingDirectory,
                                    bad_value_message, make_site, refusal, settings_text,
                                    shipped_folders, write_settings)

# The keys of settings.conf, section by section, and the Config field each one fills.
SETTINGS_KEYS: Dict[str, Dict[str, str]] = {
    "server": {name: name for name in (
        "bind", "port", "server_name", "document_root", "error_pages", "templates",
        "index_files", "allowed_hosts", "max_connections", "max_connections_per_client",
        "backlog", "thread_stack_size", "workers", "proxy_protocol")},
    "timeouts": {"request_head": "request_head_timeout", "keep_alive": "keep_alive_timeout",
                 "shutdown_grace": "shutdown_grace", "send": "send_timeout",
                 "body_min_rate": "body_min_rate", "body_grace": "body_grace"},
    "limits": {name: name for name in (
        "max_request_line", "max_header_block", "max_header_count", "max_request_body",
        "max_ranges", "min_send_rate")},
    "files": {name: name for name in ("listing", "dotfiles", "symlinks", "file_cache_size",
                                      "open_file_cache", "open_file_cache_idle",
                                      "zip_download", "max_zip_size",
                                      "max_concurrent_zips", "upload",
                                      "max_upload_size", "max_upload_files",
                                      "upload_overwrite", "active_content",
                                      "max_search_entries", "search_timeout",
                                      "upload_expiry", "allow_delete", "allow_rename",
                                      "webdav")},
    "caching": {name: name for name in ("cache_control", "max_age")},
    "compression": {name: name for name in ("precompressed", "gzip", "gzip_min_size")},
    "logging": {"access_log": "access_log", "error_log": "error_log",
                "log_colour": "log_colour", "format": "log_format",
                "trusted_proxies": "trusted_proxies", "log_buffer": "log_buffer"},
    "auth": {name: "auth_" + name for name in ("users_file", "protect", "realm",
                                               "max_failures_per_minute")},
    "cors": {"allow_origins": "cors_allow_origins"},
    "tls": {"certificate": "tls_certificate", "key": "tls_key", "hsts": "tls_hsts"},
    "proxy": {name: "proxy_" + name for name in (
        "enabled", "allowed_clients", "blacklist", "blacklist_file", "denied_destinations",
        "connect_ports", "http_ports", "allowed_destinations", "connect_timeout",
        "upstream_timeout", "tunnel_idle", "dns_cache_ttl", "dns_timeout", "forwarded_for",
        "parent", "parent_bypass", "pac", "auth", "auth_failures_per_minute", "via")},
    "metrics": {name: "metrics_" + name for name in ("enabled", "path", "allowed_clients",
                                                     "bind", "port")},
}

INTEGER_0_65535 = "must be an integer from 0 to 65535"
COUNT = "must be an integer from 1 to 2147483647"
SIZE_GRAMMAR = ("must be a number of bytes such as 65536, 64K or 1M"
                " (K, M, G or KiB, MiB, GiB: powers of 1024)")
SIZE_FROM_1 = "must be from 1 to 2147483648 bytes (2G)"
SECONDS = "must be a number of seconds above 0 and at most 86400, such as 10 or 2.5"
BOOLEAN = "must be yes, no, true, false, on or off"
LIFETIME = "must be a lifetime from 60 seconds to 365d, such as 3600, 30m, 24h or 7d"
BIND = "must be an IPv4 or IPv6 address (without brackets) or localhost"
STACK = "must be 0 (the platform default) or a multiple of 4K from 64K to 2G"
WORKERS = "must be auto or an integer from 1 to 256"


def origin(text: str) -> str:
    return (f"{text!r} is not an origin such as https://app.example or http://localhost:3000"
            " (scheme://host[:port], nothing after)")


def host_pattern(pattern: str) -> str:
    return (f"{pattern!r} is not *, *.example.com, a host name or an IP address"
            " (each optionally with :PORT)")


# (section, key, value as written, why it is refused): every one must stop start-up.
BAD_VALUES: Tuple[Tuple[str, str, str, str], ...] = (
    ("server", "bind", "example.com", BIND),
    ("server", "bind", "[::1]", BIND),
    ("server", "bind", "127.0.0.256", BIND),
    ("server", "bind", "", BIND),
    ("server", "port", "99999", INTEGER_0_65535),
    ("server", "port", "65536", INTEGER_0_65535),
    ("server", "port", "-1", INTEGER_0_65535),
    ("server", "port", "+80", INTEGER_0_65535),
    ("server", "port", "8_080", INTEGER_0_65535),
    ("server", "port", "80.0", INTEGER_0_65535),
    ("server", "port", "0x50", INTEGER_0_65535),
    ("server", "port", "\u0668\u0660", INTEGER_0_65535),  # Arabic-Indic "80"
    ("server", "port", "", INTEGER_0_65535),
    ("server", "server_name", "exa mple.com", "must be a host name or an IP address"),
    ("server", "server_name", "-example.com", "must be a host name or an IP address"),
    ("server", "server_name", "1.2.3.999", "must be a host name or an IP address"),
    ("server", "index_files", "../secret.html",
     "'../secret.html' is not a plain file name (no /, \\ or ..)"),
    ("server", "index_files", "index.html, ..",
     "'..' is not a plain file name (no /, \\ or ..)"),
    ("server", "index_files", "index.html,,index.htm", "has an empty item between commas"),
    ("server", "index_files", "index.html,", "has an empty item between commas"),
    ("server", "allowed_hosts", "", "must list at least one host pattern (* allows any host)"),
    ("server", "allowed_hosts", "localhost, exa mple.com", host_pattern("exa mple.com")),
    ("server", "allowed_hosts", "example.com:http", host_pattern("example.com:http")),
    ("server", "allowed_hosts", "*.[::1]", host_pattern("*.[::1]")),
    ("server", "max_connections", "0", COUNT),
    ("server", "max_connections", "2147483648", COUNT),
    ("server", "max_connections_per_client", "-5", COUNT),
    ("server", "backlog", "0", COUNT),
    ("server", "thread_stack_size", "32K", STACK),
    ("server", "thread_stack_size", "65537", STACK),
    ("server", "thread_stack_size", "4G", STACK),
    ("server", "thread_stack_size", "big", SIZE_GRAMMAR),
    ("server", "workers", "0", WORKERS),
    ("server", "workers", "257", WORKERS),
    ("server", "workers", "+4", WORKERS),
    ("server", "workers", "4.0", WORKERS),
    ("server", "workers", "", WORKERS),
    ("server", "workers", "all", WORKERS),
    ("timeouts", "request_head", "0", SECONDS),
    ("timeouts", "request_head", "0.0", SECONDS),
    ("timeouts", "keep_alive", "-1", SECONDS),
    ("timeouts", "keep_alive", "86401", SECONDS),
    ("timeouts", "keep_alive", ".5", SECONDS),
    ("timeouts", "keep_alive", "5s", SECONDS),
    ("timeouts", "shutdown_grace", "1e3", SECONDS),
    ("timeouts", "shutdown_grace", "nan", SECONDS),
    ("timeouts", "shutdown_grace", "inf", SECONDS),
    ("limits", "max_request_line", "0", SIZE_FROM_1),
    ("limits", "max_header_block", "64KB", SIZE_GRAMMAR),
    ("limits", "max_header_block", "64 K", SIZE_GRAMMAR),
    ("limits", "max_header_block", "64k", SIZE_GRAMMAR),
    ("limits", "max_header_block", "-64K", SIZE_GRAMMAR),
    ("limits", "max_header_block", "1.5M", SIZE_GRAMMAR),
    ("limits", "max_request_body", "3G", SIZE_FROM_1),
    ("limits", "max_header_count", "0", COUNT),
    ("limits", "max_ranges", "0", COUNT),
    ("files", "listing", "maybe", BOOLEAN),
    ("files", "dotfiles", "1", BOOLEAN),
    ("files", "symlinks", "sometimes", "must be one of never, inside, always"),
    ("files", "symlinks", "", "must be one of never, inside, always"),
    ("files", "zip_download", "sometimes", BOOLEAN),
    ("files", "max_zip_size", "0", "must be from 1 to 1099511627776 bytes (1024G)"),
    ("files", "max_zip_size", "1025G", "must be from 1 to 1099511627776 bytes (1024G)"),
    ("files", "max_zip_size", "1T", SIZE_GRAMMAR),
    ("files", "upload", "sometimes", BOOLEAN),
    ("files", "max_upload_size", "0", SIZE_FROM_1),
    ("files", "max_upload_size", "3G", SIZE_FROM_1),
    ("files", "max_upload_size", "100MB", SIZE_GRAMMAR),
    ("files", "max_upload_files", "0", COUNT),
    ("files", "upload_overwrite", "", BOOLEAN),
    ("files", "allow_delete", "maybe", BOOLEAN),
    ("files", "allow_rename", "", BOOLEAN),
    ("files", "webdav", "yes", "must be one of no, read, write"),
    ("files", "webdav", "", "must be one of no, read, write"),
    ("files", "upload_expiry", "59", LIFETIME),
    ("files", "upload_expiry", "0", LIFETIME),
    ("files", "upload_expiry", "366d", LIFETIME),
    ("files", "upload_expiry", "1.5h", LIFETIME),
    ("files", "upload_expiry", "24 h", LIFETIME),
    ("files", "upload_expiry", "1w", LIFETIME),
    ("files", "upload_expiry", "-1h", LIFETIME),
    ("files", "upload_expiry", "", LIFETIME),
    ("files", "max_concurrent_zips", "0", COUNT),
    ("files", "active_content", "inline", "must be one of auto, sandbox"),
    ("files", "max_search_entries", "-1", "must be an integer from 0 to 2147483647"),
    ("files", "search_timeout", "0", SECONDS),
    ("caching", "cache_control", "max-age=60, \u00e9", "must be printable ASCII on one line"),
    ("caching", "max_age", ".css", "'.css' is not .extension=value"),
    ("caching", "max_age", ".css=60=70", "'.css=60=70' is not .extension=value"),
    ("caching", "max_age", ".css=soon",
     "'soon' is not a number of seconds from 0 to 2147483648"),
    ("caching", "max_age", ".css=2147483649",
     "'2147483649' is not a number of seconds from 0 to 2147483648"),
    ("caching", "max_age", "css=60", "'css' is not a file extension such as .css"),
    ("caching", "max_age", ".css=1, .CSS=2", "lists .css twice"),
    ("compression", "precompressed", "sometimes", BOOLEAN),
    ("compression", "gzip", "", BOOLEAN),
    ("compression", "gzip_min_size", "-1", SIZE_GRAMMAR),
    ("logging", "log_colour", "rainbow", "must be one of auto, always, never"),
    ("logging", "trusted_proxies", "10.0.0.0/8, proxy.local",
     "'proxy.local' is not an IP address or network (10.0.0.0/8)"),
    ("logging", "trusted_proxies", "10.0.0.0/33",
     "'10.0.0.0/33' is not an IP address or network (10.0.0.0/8)"),
    ("logging", "access_log", "", "must be a path"),
    ("auth", "protect", "", "must list at least one URL path (/ protects the whole site)"),
    ("auth", "protect", "private/", "'private/' is not a URL path such as /private/"),
    ("auth", "protect", "/private/, /a%2Fb/", "'/a%2Fb/' is not a URL path such as /private/"),
    ("auth", "protect", "/a/%zz/", "'/a/%zz/' is not a URL path such as /private/"),
    ("auth", "protect", "/a/,,/b/", "has an empty item between commas"),
    ("auth", "realm", "caf\u00e9", "must be printable ASCII"),
    ("auth", "realm", "a\tb", "must be printable ASCII"),
    ("auth", "max_failures_per_minute", "-1", "must be an integer from 0 to 2147483647"),
    ("auth", "max_failures_per_minute", "ten", "must be an integer from 0 to 2147483647"),
    ("auth", "user_file", "users", "unknown setting (did you mean users_file?)"),
    ("cors", "allow_origins", "*, https://app.example",
     "* allows every origin; list origins without it"),
    ("cors", "allow_origins", "https://app.example/", origin("https://app.example/")),
    ("cors", "allow_origins", "https://app.example/path", origin("https://app.example/path")),
    ("cors", "allow_origins", "app.example", origin("app.example")),
    ("cors", "allow_origins", "null", origin("null")),
    ("cors", "allow_origins", "https://user@app.example", origin("https://user@app.example")),
    ("cors", "allow_origins", "https://app.example,", "has an empty item between commas"),
    ("cors", "allow_origins", "https://app_1.example",
     "'https://app_1.example' has a malformed host name or IPv4 address"),
    ("cors", "allow_origins", "http://1.2.3.999",
     "'http://1.2.3.999' has a malformed host name or IPv4 address"),
    ("cors", "allow_origins", "http://[::1::2]", "'http://[::1::2]' has a malformed IPv6 address"),
    ("cors", "allow_origins", "http://localhost:65536",
     "'http://localhost:65536' has a port outside 1 to 65535"),
    ("logging", "log_buffer", "4095", "must be from 4096 to 2147483648 bytes (2G)"),
    ("logging", "log_buffer", "1 M", SIZE_GRAMMAR),
    ("proxy", "enabled", "maybe", BOOLEAN),
    ("proxy", "allowed_clients", "127.0.0.1, localhost",
     "'localhost' is not an IP address or network (10.0.0.0/8)"),
    ("proxy", "blacklist", "ads.example, exa mple.com",
     "'exa mple.com' is not a domain name, IP address or network"),
    ("proxy", "blacklist", "*.example.com",
     "'*.example.com' is not a domain name, IP address or network"),
    ("proxy", "blacklist", "127.1", "'127.1' is not a domain name, IP address or network"),
    ("proxy", "blacklist", "10.0.0.0/33",
     "'10.0.0.0/33' is not a domain name, IP address or network"),
    ("proxy", "blacklist", "a.example,,b.example", "has an empty item between commas"),
    ("proxy", "denied_destinations", "fe80::/129",
     "'fe80::/129' is not an IP address or network (10.0.0.0/8)"),
    ("proxy", "connect_ports", "https", "'https' is not a port from 1 to 65535"),
    ("proxy", "connect_ports", "443, 0", "'0' is not a port from 1 to 65535"),
    ("proxy", "connect_ports", "65536", "'65536' is not a port from 1 to 65535"),
    ("proxy", "connect_ports", "+443", "'+443' is not a port from 1 to 65535"),
    ("proxy", "connect_ports", "443-445", "'443-445' is not a port from 1 to 65535"),
    ("proxy", "http_ports", "80, 0", "'0' is not a port or range (such as 1025-65535) within"
                                     " 1 to 65535"),
    ("proxy", "http_ports", "2000-1025", "'2000-1025' is not a port or range (such as"
                                         " 1025-65535) within 1 to 65535"),
    ("proxy", "http_ports", "1025-65536", "'1025-65536' is not a port or range (such as"
                                          " 1025-65535) within 1 to 65535"),
    ("proxy", "http_ports", "80-", "'80-' is not a port or range (such as 1025-65535) within"
                                   " 1 to 65535"),
    ("proxy", "dns_cache_ttl", "-1", "must be 0 (off) or a number of seconds above 0 and at"
                                     " most 86400, such as 30 or 2.5"),
    ("proxy", "dns_timeout", "0", "must be a number of seconds above 0 and at most 86400,"
                                  " such as 10 or 2.5"),
    ("proxy", "forwarded_for", "append", "must be one of no, yes, delete"),
    ("proxy", "parent", "proxy.example:3128", "'proxy.example:3128' is not a proxy address"
     " such as http://proxy.example:3128 or http://user:password@proxy.example:3128"),
    ("proxy", "parent", "http://proxy.example", "'http://proxy.example' does not name a host"
     " and a port from 1 to 65535, such as proxy.example:3128"),
    ("proxy", "parent", "http://exa mple:3128", "'http://exa mple:3128' does not name a host"
     " and a port from 1 to 65535, such as proxy.example:3128"),
    ("proxy", "parent_bypass", "intra net", "'intra net' is not a domain name, IP address or"
                                            " network"),
    ("proxy", "allowed_destinations", "exa mple.com",
     "'exa mple.com' is not a domain name, IP address or network"),
    ("proxy", "connect_timeout", "0", SECONDS),
    ("proxy", "upstream_timeout", "1m", SECONDS),
    ("proxy", "tunnel_idle", "86401", SECONDS),
    ("proxy", "auth_failures_per_minute", "-1", "must be an integer from 0 to 2147483647"),
    ("proxy", "auth_failures_per_minute", "ten", "must be an integer from 0 to 2147483647"),
    ("proxy", "via", "sometimes", BOOLEAN),
    ("proxy", "proxy", "yes", "unknown setting"),
    ("proxy", "connect_port", "443", "unknown setting (did you mean connect_ports?)"),
    ("http", "port", "8080", "unknown section (sections: server, timeouts, limits, files,"
     " caching, compression, logging, auth, cors, tls, proxy, metrics, mime)"),
    ("server", "prot", "8080", "unknown setting (did you mean port?)"),
    ("server", "Port", "8080", "unknown setting (did you mean port?)"),
    ("timeouts", "request_head_timeout", "10", "unknown setting (did you mean request_head?)"),
    ("limits", "workers", "4", "unknown setting"),
)


class BadSettingTests(unittest.TestCase):
    """Every refused value names the file, section, key and value, and says why."""

    def test_each_bad_value_is_refused_with_its_message(self) -> None:
        folder = make_site(self)
        for section, key, value, reason in BAD_VALUES:
            with self.subTest(section=section, key=key, value=value):
                path = write_settings(folder, {(section, key): value})
                refused = refusal(str(path))
                self.assertEqual(refused,
                                 bad_value_message(path, section, key, value, reason))

    def test_message_matches_documented_example(self) -> None:
        folder = make_site(self)
        write_settings(folder, {("server", "port"): "99999"})
        with WorkingDirectory(folder), self.assertRaises(ConfigError) as caught:
            load_config("settings.conf")
        self.assertEqual(str(caught.exception),
                         "settings.conf [server] port = 99999: must be an integer from 0 to 65535")

    def test_default_section_is_not_special(self) -> None:
        # configparser would copy [DEFAULT] keys into every section; here it is just unknown.
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text("[DEFAULT]\nport = 1\n" + settings_text())
        refused = refusal(str(path))
        self.assertTrue(refused.startswith(f"{path} [DEFAULT]: unknown section"))

    def test_inline_comment_is_part_of_the_value(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("server", "port"): "8080 # the usual"})
        refused = refusal(str(path))
        self.assertEqual(refused,
                         f"{path} [server] port = 8080 # the usual: {INTEGER_0_65535}")

    def test_continuation_line_is_refused_and_quoted(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text(settings_text() + "[limits]\nmax_ranges = 16\n  17\n")
        refused = refusal(str(path))
        self.assertEqual(refused,
                         f"{path} [limits] max_ranges = '16\\n17': {COUNT}")

    def test_mime_key_must_be_an_extension(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("mime", "mjs"): "text/javascript"})
        refused = refusal(str(path))
        self.assertEqual(refused, f"{path} [mime] mjs = text/javascript:"
                                  " 'mjs' is not a file extension such as .css")

    def test_mime_value_must_be_a_bare_media_type(self) -> None:
        folder = make_site(self)
        for value in ("javascript", "text/javascript; charset=utf-8", "text /javascript", ""):
            with self.subTest(value=value):
                path = write_settings(folder, {("mime", ".mjs"): value})
                refused = refusal(str(path))
                shown = value or "''"
                self.assertEqual(refused,
                                 f"{path} [mime] .mjs = {shown}: {value!r} is not a media type"
                                 " such as text/javascript")

    def test_mime_extension_twice_in_different_case(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text(settings_text() + "[mime]\n.mjs = text/javascript\n.MJS = text/plain\n")
        refused = refusal(str(path))
        self.assertEqual(refused,
                         f"{path} [mime] .MJS = text/plain: .mjs is set twice")

    def test_cache_control_rejects_header_injection(self) -> None:
        # A CR or LF in a header value would let the settings add arbitrary response headers.
        path = write_settings(make_site(self))
        refused = refusal(str(path), {"cache_control": "no-cache\r\nSet-Cookie: a=b"})
        self.assertEqual(refused, "--cache-control 'no-cache\\r\\nSet-Cookie: a=b':"
                                  " must be printable ASCII on one line")

    def test_mime_type_rejects_header_injection(self) -> None:
        path = write_settings(make_site(self))
        refused = refusal(str(path), {"mime_types": {".x": "text/plain\r\nX-Evil: 1"}})
        self.assertIn("is not a media type", refused)

    def test_index_file_cannot_leave_the_folder(self) -> None:
        path = write_settings(make_site(self))
        for name in ("../etc/passwd", "/etc/passwd", "sub/index.html", "..\\x", ".", "a\x00b"):
            with self.subTest(name=name), self.assertRaises(ConfigError) as caught:
                load_config(str(path), {"index_files": name})
            self.assertIn("is not a plain file name", str(caught.exception))


class CommandLineBadValueTests(CommandLineCase):
    """main() refuses every bad value with the one-line message, exit 2, and never serves."""

    def test_each_bad_value_in_the_file(self) -> None:
        folder = make_site(self)
        for section, key, value, reason in BAD_VALUES:
            with self.subTest(section=section, key=key, value=value):
                path = write_settings(folder, {(section, key): value})
                self.assert_refused(["--config", str(path)],
                                    bad_value_message(path, section, key, value, reason))

    def test_each_bad_value_in_the_default_file(self) -> None:
        folder = make_site(self)
        for section, key, value, reason in BAD_VALUES[:5]:
            with self.subTest(section=section, key=key, value=value):
                path = write_settings(folder, {(section, key): value})
                self.assert_refused([], bad_value_message(path, section, key, value, reason),
                                    default_config=path)


class SettingsFileTests(unittest.TestCase):
    """A settings file that is missing, unreadable or not INI stops start-up clearly."""

    def assert_refused(self, path: Path, message: str) -> None:
        refused = refusal(str(path))
        self.assertEqual(refused, message)

    def test_missing_file(self) -> None:
        folder = make_site(self)
        self.assert_refused(folder / "nope.conf",
                            f"{folder / 'nope.conf'}: settings file does not exist")

    def test_folder_instead_of_file(self) -> None:
        folder = make_site(self)
        self.assert_refused(folder / "public_html", f"{folder / 'public_html'}:"
                                                    " cannot read settings file (Is a directory)")

    def test_not_utf8(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_bytes(b"[server]\nserver_name = caf\xe9\n")
        self.assert_refused(path, f"{path} line 2: not UTF-8 text")

    def test_utf8_byte_order_mark_is_accepted(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_bytes(b"\xef\xbb\xbf" + settings_text().encode())
        self.assertEqual(load_config(str(path)).port, 8080)

    def test_key_before_any_section(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text("port = 8080\n" + settings_text())
        self.assert_refused(path, f"{path} line 1: expected a [section] header first")

    def test_line_without_equals(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text("[server]\nport 8080\n")
        self.assert_refused(path, f"{path} line 2: expected key = value or a [section] header")

    def test_key_set_twice(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text("[server]\nport = 1\nport = 2\n")
        self.assert_refused(path, f"{path} line 3: [server] port is set twice")

    def test_section_twice(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text("[files]\n[files]\n")
        self.assert_refused(path, f"{path} line 2: section [files] appears twice")


class PathTests(unittest.TestCase):
    """Folders and log files: resolved against the right folder and checked on disk."""

    def test_relative_paths_resolve_against_the_settings_folder(self) -> None:
        folder = make_site(self)
        (folder / "logs").mkdir()
        path = write_settings(folder, {("logging", "access_log"): "logs/access.log",
                                       ("logging", "error_log"): "logs/../logs/error.log"})
        elsewhere = make_site(self)
        with WorkingDirectory(elsewhere):
            config = load_config(str(path))
        self.assertEqual(config.document_root, str(folder / "public_html"))
        self.assertEqual(config.error_pages, str(folder / "error_pages"))
        self.assertEqual(config.templates, str(folder / "other_templates"))
        self.assertEqual(config.access_log, str(folder / "logs" / "access.log"))
        self.assertEqual(config.error_log, str(folder / "logs" / "error.log"))

    def test_relative_settings_path_resolves_against_the_current_folder(self) -> None:
        folder = make_site(self)
        (folder / "conf").mkdir()
        for name in ("public_html", "error_pages", "other_templates"):
            shutil.move(str(folder / name), str(folder / "conf" / name))
        write_settings(folder / "conf")
        with WorkingDirectory(folder):
            config = load_config(os.path.join("conf", "settings.conf"))
        self.assertEqual(config.document_root, str(folder / "conf" / "public_html"))

    def test_absolute_paths_are_kept(self) -> None:
        folder = make_site(self)
        other = make_site(self)
        path = write_settings(folder, {("server", "document_root"): str(other / "public_html")})
        self.assertEqual(load_config(str(path)).document_root, str(other / "public_html"))

    def test_document_root_follows_symlinks_to_its_real_path(self) -> None:
        folder = make_site(self)
        (folder / "www").symlink_to(folder / "public_html")
        path = write_settings(folder, {("server", "document_root"): "www"})
        self.assertEqual(load_config(str(path)).document_root, str(folder / "public_html"))

    def test_missing_document_root(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("server", "document_root"): "htdocs"})
        refused = refusal(str(path))
        self.assertEqual(refused, f"{path} [server] document_root = htdocs:"
                                  f" folder {folder / 'htdocs'} does not exist")

    def test_document_root_that_is_a_file(self) -> None:
        folder = make_site(self)
        (folder / "page.html").write_text("hi")
        path = write_settings(folder, {("server", "document_root"): "page.html"})
        refused = refusal(str(path))
        self.assertEqual(refused, f"{path} [server] document_root = page.html:"
                                  f" {folder / 'page.html'} is not a folder")

    @unittest.skipIf(hasattr(os, "geteuid") and os.geteuid() == 0, "root reads every folder")
    def test_unreadable_document_root(self) -> None:
        folder = make_site(self)
        (folder / "public_html").chmod(0)
        self.addCleanup((folder / "public_html").chmod, 0o755)
        path = write_settings(folder)
        refused = refusal(str(path))
        root = folder / "public_html"
        self.assertEqual(refused, f"{path} [server] document_root = public_html:"
                                  f" folder {root} is not readable")

    def test_error_pages_without_error_html(self) -> None:
        folder = make_site(self)
        (folder / "error_pages" / "error.html").unlink()
        path = write_settings(folder)
        refused = refusal(str(path))
        needed = folder / "error_pages" / "error.html"
        self.assertEqual(refused, f"{path} [server] error_pages = error_pages:"
                                  f" required template {needed} is missing or"
                                  " unreadable")

    def test_templates_without_dir_html(self) -> None:
        folder = make_site(self)
        (folder / "other_templates" / "dir.html").unlink()
        (folder / "other_templates" / "dir.html").mkdir()
        path = write_settings(folder)
        refused = refusal(str(path))
        needed = folder / "other_templates" / "dir.html"
        self.assertEqual(refused, f"{path} [server] templates = other_templates:"
                                  f" required template {needed} is missing or"
                                  " unreadable")

    def test_log_in_a_missing_folder(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("logging", "access_log"): "logs/access.log"})
        refused = refusal(str(path))
        self.assertEqual(refused, f"{path} [logging] access_log = logs/access.log:"
                                  f" folder {folder / 'logs'} does not exist")

    def test_log_that_is_a_folder(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("logging", "error_log"): "public_html"})
        refused = refusal(str(path))
        root = folder / "public_html"
        self.assertEqual(refused, f"{path} [logging] error_log = public_html:"
                                  f" {root} is a folder, not a file")

    @unittest.skipIf(hasattr(os, "geteuid") and os.geteuid() == 0, "root writes every file")
    def test_log_that_is_not_writable(self) -> None:
        folder = make_site(self)
        (folder / "access.log").write_text("")
        (folder / "access.log").chmod(0o444)
        path = write_settings(folder, {("logging", "access_log"): "access.log"})
        refused = refusal(str(path))
        self.assertEqual(refused, f"{path} [logging] access_log = access.log:"
                                  f" file {folder / 'access.log'} is not writable")

    def test_existing_log_file_is_accepted_and_not_changed(self) -> None:
        folder = make_site(self)
        (folder / "access.log").write_text("old line\n")
        path = write_settings(folder, {("logging", "access_log"): "access.log"})
        self.assertEqual(load_config(str(path)).access_log, str(folder / "access.log"))
        self.assertEqual((folder / "access.log").read_text(), "old line\n")

    def test_checking_a_log_path_creates_nothing(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("logging", "access_log"): "new.log"})
        load_config(str(path))
        self.assertFalse((folder / "new.log").exists())


class GoodValueTests(unittest.TestCase):
    """Every documented spelling of a value parses to the intended setting."""

    def load(self, values: Mapping[Tuple[str, str], str]) -> Config:
        return load_config(str(write_settings(make_site(self), values)))

    def assert_parses(self, section: str, key: str, cases: Mapping[str, object]) -> None:
        field = SETTINGS_KEYS.get(section, {}).get(key, key)
        for text, expected in cases.items():
            with self.subTest(key=key, text=text):
                self.assertEqual(getattr(self.load({(section, key): text}), field), expected)

    def test_sizes(self) -> None:
        self.assert_parses("limits", "max_header_block", {
            "65536": 65536, "64K": 65536, "64KiB": 65536, "1M": 1048576, "1MiB": 1048576,
            "2G": 2 ** 31, "1GiB": 2 ** 30, "0001": 1, "1": 1})
        self.assert_parses("compression", "gzip_min_size", {"0": 0, "0K": 0, "1K": 1024})
        self.assert_parses("logging", "log_buffer", {"4K": 4096, "4096": 4096, "1M": 2 ** 20})

    def test_zip_sizes(self) -> None:
        self.assert_parses("files", "max_zip_size", {
            "1": 1, "1G": 2 ** 30, "16G": 2 ** 34, "1024G": 2 ** 40})

    def test_cors_origins(self) -> None:
        # Written the way browsers send Origin: lower case, no default port, IPv6 compressed.
        self.assert_parses("cors", "allow_origins", {
            "": (), "*": ("*",),
            "https://app.example": ("https://app.example",),
            "HTTPS://App.Example:443": ("https://app.example",),
            "http://localhost:80, http://localhost:3000": ("http://localhost",
                                                          "http://localhost:3000"),
            "https://a.example:80": ("https://a.example:80",),
            "http://[0:0::1]:8080": ("http://[::1]:8080",),
            "http://127.0.0.1:8000, http://127.0.0.1:8000": ("http://127.0.0.1:8000",),
            "https://xn--bcher-kva.example": ("https://xn--bcher-kva.example",)})

    def test_upload_settings(self) -> None:
        self.assert_parses("files", "upload", {"yes": True, "no": False, "On": True})
        self.assert_parses("files", "upload_overwrite", {"yes": True, "off": False})
        self.assert_parses("files", "max_upload_size", {"100M": 100 * 2 ** 20, "2G": 2 ** 31,
                                                        "1": 1})
        self.assert_parses("files", "max_upload_files", {"1": 1, "100": 100})
        self.assert_parses("files", "webdav", {"no": "no", "Read": "read", "WRITE": "write"})
        self.assert_parses("files", "allow_delete", {"yes": True, "no": False})
        self.assert_parses("files", "allow_rename", {"on": True, "off": False})
        self.assert_parses("files", "upload_expiry", {"60": 60, "30m": 1800, "24h": 86400,
                                                      "365d": 365 * 86400, "90s": 90})

    def test_trusted_proxies(self) -> None:
        self.assert_parses("logging", "trusted_proxies", {
            "": (), "10.0.0.0/8": ("10.0.0.0/8",), "127.0.0.1, ::1": ("127.0.0.1", "::1")})

    def test_thread_stack_size(self) -> None:
        self.assert_parses("server", "thread_stack_size", {
            "0": 0, "64K": 65536, "68K": 69632, "1M": 1048576, "65536": 65536})

    def test_workers(self) -> None:
        self.assert_parses("server", "workers", {"1": 1, "4": 4, "256": 256, "004": 4})

    def test_auto_workers_is_the_usable_cpu_count_up_to_256(self) -> None:
        for cpus, expected in ((1, 1), (6, 6), (300, 256)):
            with self.subTest(cpus=cpus), \
                    mock.patch("nex.process.values.cpu_count", return_value=cpus):
                self.assert_parses("server", "workers", {"auto": expected, "AUTO": expected})

    def test_booleans(self) -> None:
        for text, expected in {"yes": True, "no": False, "true": True, "false": False,
                               "on": True, "off": False, "YES": True, "False": False,
                               "On": True}.items():
            with self.subTest(text=text):
                config = self.load({("files", "listing"): text, ("files", "dotfiles"): text,
                                    ("compression", "precompressed"): text,
                                    ("compression", "gzip"): text,
                                    ("files", "zip_download"): text})
                self.assertEqual((config.listing, config.dotfiles, config.precompressed,
                                  config.gzip, config.zip_download), (expected,) * 5)

    def test_durations(self) -> None:
        for key in ("request_head", "keep_alive", "shutdown_grace", "send"):
            self.assert_parses("timeouts", key, {"1": 1.0, "2.5": 2.5, "0.001": 0.001,
                                                 "86400": 86400.0, "007": 7.0})

    def test_choices(self) -> None:
        self.assert_parses("files", "symlinks", {"never": "never", "inside": "inside",
                                                 "always": "always", "Inside": "inside"})
        self.assert_parses("logging", "log_colour", {"auto": "auto", "always": "always",
                                                     "never": "never", "NEVER": "never"})

    def test_bind_addresses(self) -> None:
        self.assert_parses("server", "bind", {
            "127.0.0.1": "127.0.0.1", "0.0.0.0": "0.0.0.0", "::": "::", "::1": "::1",
            "localhost": "localhost", "2001:db8::1": "2001:db8::1"})

    def test_ports(self) -> None:
        self.assert_parses("server", "port", {"0": 0, "80": 80, "65535": 65535, "08080": 8080})

    def test_counts(self) -> None:
        for key in ("max_connections", "max_connections_per_client", "backlog"):
            self.assert_parses("server", key, {"1": 1, "2147483647": 2147483647})
        for key in ("max_header_count", "max_ranges"):
            self.assert_parses("limits", key, {"1": 1, "500": 500})

    def test_server_names(self) -> None:
        self.assert_parses("server", "server_name", {
            "example.com": "example.com", "Files.Example.com": "Files.Example.com",
            "192.0.2.1": "192.0.2.1", "::1": "::1", "localhost": "localhost"})

    def test_lists(self) -> None:
        self.assert_parses("server", "index_files", {
            "index.html": ("index.html",), "a.html,b.html": ("a.html", "b.html"),
            " a.html ,\tb.html ": ("a.html", "b.html"), "": (), ".index.html": (".index.html",)})
        self.assert_parses("server", "allowed_hosts", {
            "*": ("*",),
            "localhost, *.example.com, [::1]:8080, 127.0.0.1, ::1, example.com:80":
                ("localhost", "*.example.com", "[::1]:8080", "127.0.0.1", "::1",
                 "example.com:80")})

    def test_cache_control(self) -> None:
        self.assert_parses("caching", "cache_control", {
            "no-cache": "no-cache", "": "", "public, max-age=60": "public, max-age=60"})

    def test_max_age(self) -> None:
        self.assert_parses("caching", "max_age", {
            "": {}, ".css=3600, .js=3600": {".css": 3600, ".js": 3600},
            ".CSS = 60,.woff2=0": {".css": 60, ".woff2": 0},
            ".html=2147483648": {".html": 2147483648}})

    def test_mime_section(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text(settings_text() + "[mime]\n.mjs = text/javascript\n"
                        ".WebManifest = application/manifest+json\n; a comment\n"
                        ".wasm=application/wasm\n")
        self.assertEqual(load_config(str(path)).mime_types, {
            ".mjs": "text/javascript", ".webmanifest": "application/manifest+json",
            ".wasm": "application/wasm"})

    def test_empty_sections_and_missing_keys_keep_defaults(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text(settings_text() + "[timeouts]\n[mime]\n")
        config = load_config(str(path))
        self.assertEqual(config.keep_alive_timeout, Config.keep_alive_timeout)
        self.assertEqual(config.mime_types, {})

    def test_comments_and_blank_lines(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text("# top\n\n; other\n" + settings_text({("server", "port"): "81"}))
        self.assertEqual(load_config(str(path)).port, 81)


class AuthSettingsTests(unittest.TestCase):
    """The [auth] section: the users file must load at start-up, naming a bad line."""

    def setUp(self) -> None:
        self.folder = make_site(self)
        self.users = self.folder / "users"
        self.users.write_text(f"# staff\nalice:{hash_password('x', n=1024, r=1, p=1)}\n")

    def refusal(self, values: Mapping[Tuple[str, str], str],
                overrides: Mapping[str, object] = {}) -> str:
        return refusal(str(write_settings(self.folder, values)), overrides)

    def test_defaults_are_off(self) -> None:
        config = load_config(str(write_settings(self.folder)))
        self.assertEqual((config.auth_users_file, config.auth_protect, config.auth_realm,
                          config.auth_max_failures_per_minute), ("", ("/",), "Nex", 10))

    def test_values(self) -> None:
        config = load_config(str(write_settings(self.folder, {
            ("auth", "users_file"): "users", ("auth", "protect"): "/private/, /admin/",
            ("auth", "realm"): 'Staff "only"', ("auth", "max_failures_per_minute"): "0"})))
        self.assertEqual(config.auth_users_file, str(self.users))
        self.assertEqual(config.auth_protect, ("/private/", "/admin/"))
        self.assertEqual(config.auth_realm, 'Staff "only"')
        self.assertEqual(config.auth_max_failures_per_minute, 0)

    def test_bad_line_names_the_file_and_line(self) -> None:
        self.users.write_text("# staff\nalice\n")
        self.assertEqual(self.refusal({("auth", "users_file"): "users"}),
                         f"{self.folder / 'settings.conf'} [auth] users_file = users:"
                         f" {self.users} line 2: expected user:hash")

    def test_missing_or_unreadable_users_file(self) -> None:
        settings = self.folder / "settings.conf"
        self.assertEqual(self.refusal({("auth", "users_file"): "nobody"}),
                         f"{settings} [auth] users_file = nobody:"
                         f" {self.folder / 'nobody'} does not exist")
        self.assertEqual(self.refusal({("auth", "users_file"): "public_html"}),
                         f"{settings} [auth] users_file = public_html:"
                         f" {self.folder / 'public_html'} is not a regular file")

    def test_auth_file_flag(self) -> None:
        path = write_settings(self.folder, {("auth", "users_file"): "",
                                            ("auth", "protect"): "/private/"})
        with WorkingDirectory(self.folder):
            config = load_config(str(path), {"auth_users_file": "users"})
        self.assertEqual((config.auth_users_file, config.auth_protect),
                         (str(self.users), ("/private/",)))

    def test_auth_file_flag_names_itself_for_a_bad_file(self) -> None:
        self.users.write_text("alice:secret\n")
        with WorkingDirectory(self.folder):
            message = self.refusal({}, {"auth_users_file": "users"})
        self.assertEqual(message, f"--auth-file users: {self.users} line 1: the hash is not"
                                  " scrypt$<n>$<r>$<p>$<salt>$<key> (use nex --hash-password"
                                  " USER)")


class ProxySettingsTests(unittest.TestCase):
    """The [proxy] section: lists, ports, and the users and blacklist files it names."""

    def setUp(self) -> None:
        self.folder = make_site(self)

    def load(self, values: Mapping[Tuple[str, str], str]) -> Config:
        return load_config(str(write_settings(self.folder, values)))

    def assert_refused(self, values: Mapping[Tuple[str, str], str], message: str) -> None:
        path = write_settings(self.folder, values)
        refused = refusal(str(path))
        self.assertEqual(refused, message.format(path=path, folder=self.folder))

    def test_defaults(self) -> None:
        config = load_config(None, {"document_root": str(self.folder)})
        self.assertEqual((config.proxy_enabled, config.proxy_allowed_clients,
                          config.proxy_blacklist, config.proxy_blacklist_file,
                          config.proxy_connect_ports, config.proxy_connect_timeout,
                          config.proxy_upstream_timeout, config.proxy_tunnel_idle,
                          config.proxy_auth, config.proxy_auth_failures_per_minute,
                          config.proxy_via),
                         (False, ("127.0.0.1", "::1"), (), "", (443,), 10.0, 60.0, 300.0, "",
                          10, True))
        self.assertEqual(config.proxy_denied_destinations, (
            "127.0.0.0/8", "::1", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::"))

    def test_lists(self) -> None:
        config = self.load({("proxy", "allowed_clients"): "10.0.0.0/8, 2001:db8::/32",
                            ("proxy", "blacklist"): "ads.example, B\u00fccher.example., "
                                                    "192.0.2.1, [2001:db8::1], 10.0.0.0/8",
                            ("proxy", "denied_destinations"): "",
                            ("proxy", "connect_ports"): "443, 8443 ,563"})
        self.assertEqual(config.proxy_allowed_clients, ("10.0.0.0/8", "2001:db8::/32"))
        self.assertEqual(config.proxy_blacklist, ("ads.example", "B\u00fccher.example.",
                                                  "192.0.2.1", "[2001:db8::1]", "10.0.0.0/8"))
        self.assertEqual(config.proxy_denied_destinations, ())
        self.assertEqual(config.proxy_connect_ports, (443, 8443, 563))
        self.assertEqual(self.load({("proxy", "connect_ports"): ""}).proxy_connect_ports, ())

    def test_http_ports_and_allowed_destinations(self) -> None:
        self.assertEqual(Config().proxy_http_ports, ((80, 80), (443, 443), (1025, 65535)))
        self.assertEqual(Config().proxy_allowed_destinations, ())
        config = self.load({("proxy", "http_ports"): "80, 8000-8999",
                            ("proxy", "allowed_destinations"): "example.com, 10.0.0.0/8"})
        self.assertEqual(config.proxy_http_ports, ((80, 80), (8000, 8999)))
        self.assertEqual(config.proxy_allowed_destinations, ("example.com", "10.0.0.0/8"))
        self.assertEqual(self.load({("proxy", "http_ports"): ""}).proxy_http_ports, ())

    def test_dns_settings(self) -> None:
        self.assertEqual((Config().proxy_dns_cache_ttl, Config().proxy_dns_timeout),
                         (30.0, 5.0))
        config = self.load({("proxy", "dns_cache_ttl"): "0", ("proxy", "dns_timeout"): "0.5"})
        self.assertEqual((config.proxy_dns_cache_ttl, config.proxy_dns_timeout), (0.0, 0.5))

    def test_forwarded_for(self) -> None:
        self.assertEqual(Config().proxy_forwarded_for, "no")
        for text in ("no", "YES", "delete"):
            with self.subTest(text=text):
                self.assertEqual(self.load({("proxy", "forwarded_for"): text})
                                 .proxy_forwarded_for, text.lower())

    def test_switches_and_durations(self) -> None:
        config = self.load({("proxy", "enabled"): "yes", ("proxy", "via"): "off",
                            ("proxy", "connect_timeout"): "2.5",
                            ("proxy", "upstream_timeout"): "120",
                            ("proxy", "tunnel_idle"): "3600",
                            ("proxy", "auth_failures_per_minute"): "0"})
        self.assertEqual((config.proxy_enabled, config.proxy_via, config.proxy_connect_timeout,
                          config.proxy_upstream_timeout, config.proxy_tunnel_idle,
                          config.proxy_auth_failures_per_minute),
                         (True, False, 2.5, 120.0, 3600.0, 0))

    def test_files_resolve_against_the_settings_folder(self) -> None:
        (self.folder / "users").write_text(f"alice:{hash_password('x', n=1024, r=1)}\n")
        (self.folder / "blocked.txt").write_text("# none yet\n")
        config = self.load({("proxy", "auth"): "users", ("proxy", "blacklist_file"): "blocked.txt"})
        self.assertEqual(config.proxy_auth, str(self.folder / "users"))
        self.assertEqual(config.proxy_blacklist_file, str(self.folder / "blocked.txt"))

    def test_empty_file_settings_mean_none(self) -> None:
        config = self.load({("proxy", "auth"): "", ("proxy", "blacklist_file"): ""})
        self.assertEqual((config.proxy_auth, config.proxy_blacklist_file), ("", ""))

    def test_missing_files(self) -> None:
        for key in ("auth", "blacklist_file"):
            with self.subTest(key=key):
                self.assert_refused({("proxy", key): "absent"},
                                    f"{{path}} [proxy] {key} = absent: {{folder}}/absent"
                                    " does not exist")

    def test_folder_instead_of_a_file(self) -> None:
        self.assert_refused({("proxy", "auth"): "public_html"},
                            "{path} [proxy] auth = public_html: {folder}/public_html is not a"
                            " regular file")

    def test_bad_users_file_names_its_line(self) -> None:
        (self.folder / "users").write_text("# users\nalice:plain-text-password\n")
        self.assert_refused({("proxy", "auth"): "users"},
                            "{path} [proxy] auth = users: {folder}/users line 2: the hash is not"
                            " scrypt$<n>$<r>$<p>$<salt>$<key> (use nex --hash-password USER)")

    def test_bad_blacklist_file_names_its_line(self) -> None:
        (self.folder / "blocked.txt").write_text("ok.example\nnot ok\n")
        self.assert_refused({("proxy", "blacklist_file"): "blocked.txt"},
                            "{path} [proxy] blacklist_file = blocked.txt: {folder}/blocked.txt"
                            " line 2: 'not ok' is not a domain name, IP address or network")

    def test_enabled_override_is_the_proxy_flag(self) -> None:
        path = str(write_settings(self.folder, {("proxy", "enabled"): "no"}))
        self.assertTrue(load_config(path, {"proxy_enabled": True}).proxy_enabled)
        refused = refusal(path, {"proxy_enabled": "maybe"})
        self.assertEqual(refused, f"--proxy maybe: {BOOLEAN}")

    def test_file_override_over_an_empty_file_value(self) -> None:
        (self.folder / "users").write_text("")
        path = str(write_settings(self.folder, {("proxy", "auth"): ""}))
        config = load_config(path, {"proxy_auth": str(self.folder / "users")})
        self.assertEqual(config.proxy_auth, str(self.folder / "users"))


class OverrideTests(unittest.TestCase):
    """Command-line values win over the file and pass the very same checks."""

    def setUp(self) -> None:
        self.folder = make_site(self)
        self.path = str(write_settings(self.folder, {("server", "port"): "8000",
                                                     ("server", "bind"): "0.0.0.0"}))

    def test_overrides_win_over_the_file(self) -> None:
        config = load_config(self.path, {"port": "9000", "bind": "::1"})
        self.assertEqual((config.port, config.bind), (9000, "::1"))

    def test_file_values_stay_without_overrides(self) -> None:
        config = load_config(self.path, {})
        self.assertEqual((config.port, config.bind), (8000, "0.0.0.0"))

    def test_typed_overrides(self) -> None:
        config = load_config(self.path, {
            "port": 0, "listing": False, "keep_alive_timeout": 0.25, "shutdown_grace": 3,
            "index_files": ("home.html",), "max_age": {".css": 60},
            "mime_types": {".mjs": "text/javascript"}, "allowed_hosts": ["localhost"]})
        self.assertEqual(config.port, 0)
        self.assertIs(config.listing, False)
        self.assertEqual(config.keep_alive_timeout, 0.25)
        self.assertEqual(config.shutdown_grace, 3.0)
        self.assertEqual(config.index_files, ("home.html",))
        self.assertEqual(config.max_age, {".css": 60})
        self.assertEqual(config.mime_types, {".mjs": "text/javascript"})
        self.assertEqual(config.allowed_hosts, ("localhost",))

    def test_small_float_override(self) -> None:
        config = load_config(self.path, {"request_head_timeout": 1e-05})
        self.assertEqual(config.request_head_timeout, 1e-05)

    def test_bad_override_names_the_flag(self) -> None:
        for overrides, message in (
                ({"port": "70000"}, "--port 70000: must be an integer from 0 to 65535"),
                ({"port": 70000}, "--port 70000: must be an integer from 0 to 65535"),
                ({"port": "http"}, "--port http: must be an integer from 0 to 65535"),
                ({"port": True}, "--port yes: must be an integer from 0 to 65535"),
                ({"port": 80.5}, "--port 80.5: must be an integer from 0 to 65535"),
                ({"bind": "example.com"}, f"--bind example.com: {BIND}"),
                ({"keep_alive_timeout": 0}, f"--keep-alive-timeout 0: {SECONDS}"),
                ({"keep_alive_timeout": float("inf")}, f"--keep-alive-timeout inf: {SECONDS}"),
                ({"max_ranges": -1}, f"--max-ranges -1: {COUNT}")):
            with self.subTest(overrides=overrides):
                refused = refusal(self.path, overrides)
                self.assertEqual(refused, message)

    def test_bad_override_wins_over_a_good_file_value(self) -> None:
        with self.assertRaises(ConfigError):
            load_config(self.path, {"port": "-1"})

    def test_good_override_does_not_hide_a_bad_file_value(self) -> None:
        path = write_settings(self.folder, {("server", "port"): "99999"}, name="bad.conf")
        refused = refusal(str(path), {"port": "81"})
        self.assertEqual(refused, f"{path} [server] port = 99999: {INTEGER_0_65535}")

    def test_root_override_replaces_a_missing_file_root(self) -> None:
        # --root is how one serves elsewhere: the file's unused folder need not exist.
        path = write_settings(self.folder, {("server", "document_root"): "gone"}, name="r.conf")
        config = load_config(str(path), {"document_root": str(self.folder)})
        self.assertEqual(config.document_root, str(self.folder))

    def test_root_override_does_not_hide_a_malformed_file_root(self) -> None:
        path = write_settings(self.folder, {("server", "document_root"): "a\tb"}, name="r.conf")
        refused = refusal(str(path), {"document_root": str(self.folder)})
        self.assertEqual(refused,
                         f"{path} [server] document_root = 'a\\tb': must be a path")

    def test_relative_root_override_resolves_against_the_current_folder(self) -> None:
        elsewhere = make_site(self)
        with WorkingDirectory(elsewhere):
            config = load_config(self.path, {"document_root": "public_html"})
        self.assertEqual(config.document_root, str(elsewhere / "public_html"))
        self.assertEqual(config.templates, str(self.folder / "other_templates"))

    def test_missing_root_override_names_the_flag(self) -> None:
        with WorkingDirectory(self.folder), self.assertRaises(ConfigError) as caught:
            load_config(self.path, {"document_root": "htdocs"})
        self.assertEqual(str(caught.exception),
                         f"--root htdocs: folder {self.folder / 'htdocs'} does not exist")

    def test_unknown_override(self) -> None:
        refused = refusal(self.path, {"prot": 1})
        self.assertEqual(refused, "unknown setting 'prot'")

    def test_unsupported_override_type(self) -> None:
        refused = refusal(self.path, {"port": None})
        self.assertEqual(refused,
                         "--port None: unsupported value type NoneType")

    @settings(max_examples=300, deadline=None)
    @given(field=st.sampled_from([f.name for f in dataclasses.fields(Config)]),
           text=st.text(max_size=40))
    def test_any_text_is_a_value_or_a_config_error(self, field: str, text: str) -> None:
        overrides = {"document_root": "/", "error_pages": str(self.folder / "error_pages"),
                     "templates": str(self.folder / "other_templates"), field: text}
        try:
            load_config(None, overrides)
        except ConfigError as error:
            self.assertNotIn("\n", str(error))


class DefaultTests(unittest.TestCase):
    """Without a settings file: built-in values, the current folder and the shipped folders."""

    def test_no_file_gives_builtin_defaults(self) -> None:
        shipped = shipped_folders(self, "checkout")
        here = make_site(self)
        with WorkingDirectory(here):
            config = load_config(None, {})
        self.assertEqual(config.document_root, str(here))
        self.assertEqual(config.error_pages, str(shipped / "error_pages"))
        self.assertEqual(config.templates, str(shipped / "other_templates"))
        paths = {"document_root", "error_pages", "templates"}
        for item in dataclasses.fields(Config):
            if item.name not in paths:
                self.assertEqual(getattr(config, item.name), getattr(Config(), item.name),
                                 item.name)

    def test_folders_inside_the_installed_package_come_first(self) -> None:
        package = shipped_folders(self, "package")
        (package.parent / "error_pages").mkdir()  # a stray checkout-style folder loses
        config = load_config(None)
        self.assertEqual(config.error_pages, str(package / "error_pages"))
        self.assertEqual(config.templates, str(package / "other_templates"))

    def test_missing_shipped_templates(self) -> None:
        shipped = shipped_folders(self, "checkout")
        shutil.rmtree(shipped / "other_templates")
        refused = refusal(None)
        folder = shipped / "other_templates"
        self.assertEqual(refused, f"[server] templates = {folder} (built-in"
                                  f" default): folder {folder} does not exist")

    def test_file_without_a_key_keeps_its_builtin_default(self) -> None:
        shipped = shipped_folders(self, "checkout")
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text("[server]\nport = 81\n")
        with WorkingDirectory(folder / "public_html"):
            config = load_config(str(path))
        self.assertEqual(config.port, 81)
        self.assertEqual(config.document_root, str(folder / "public_html"))
        self.assertEqual(config.templates, str(shipped / "other_templates"))


class CopiedSettingsTests(unittest.TestCase):
    """The shipped settings.conf copied away from the checkout (to /etc/nex, say)."""

    def copy_shipped(self) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="nex-etc-")).resolve()
        self.addCleanup(shutil.rmtree, folder)
        shutil.copy(SHIPPED_SETTINGS, folder / "settings.conf")
        return folder / "settings.conf"

    def test_shipped_folder_names_mean_the_shipped_folders_when_absent_beside_it(self) -> None:
        for layout in ("package", "checkout"):
            with self.subTest(layout=layout):
                shipped = shipped_folders(self, layout)
                path = self.copy_shipped()
                config = load_config(str(path), {"document_root": str(path.parent)})
                self.assertEqual(config.error_pages, str(shipped / "error_pages"))
                self.assertEqual(config.templates, str(shipped / "other_templates"))

    def test_copy_must_still_name_a_document_root_that_exists(self) -> None:
        shipped_folders(self, "package")
        path = self.copy_shipped()
        refused = refusal(str(path))
        folder = path.parent / "public_html"
        self.assertEqual(refused, f"{path} [server] document_root = public_html:"
                                  f" folder {folder} does not exist")

    def test_any_other_missing_folder_is_an_error(self) -> None:
        shipped_folders(self, "package")
        folder = make_site(self)
        for key, value in (("error_pages", "pages"), ("error_pages", "./error_pages"),
                           ("templates", "templates"), ("templates", "other_templates/"),
                           ("templates", "/nonexistent.invalid/other_templates")):
            with self.subTest(key=key, value=value):
                path = folder / "elsewhere" / "settings.conf"
                path.parent.mkdir(exist_ok=True)
                path.write_text(f"[server]\ndocument_root = ..\n{key} = {value}\n")
                refused = refusal(str(path))
                missing = os.path.realpath(path.parent / value)
                self.assertEqual(refused, f"{path} [server] {key} = {value}:"
                                          f" folder {missing} does not exist")

    def test_a_folder_of_the_shipped_name_beside_the_file_is_used_and_checked(self) -> None:
        shipped_folders(self, "package")
        path = self.copy_shipped()
        (path.parent / "error_pages").mkdir()
        refused = refusal(str(path), {"document_root": str(path.parent)})
        needed = path.parent / "error_pages" / "error.html"
        self.assertEqual(refused,
                         f"{path} [server] error_pages = error_pages: required template"
                         f" {needed} is missing or unreadable")


class ShippedSettingsTests(unittest.TestCase):
    """The settings.conf that ships with Nex: complete, commented, equal to the defaults."""

    def read_shipped(self) -> configparser.ConfigParser:
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment]
        parser.read(SHIPPED_SETTINGS, encoding="utf-8")
        return parser

    def test_every_key_is_present(self) -> None:
        parser = self.read_shipped()
        self.assertEqual(parser.sections(), list(SETTINGS_KEYS) + ["mime"])
        for section, keys in SETTINGS_KEYS.items():
            self.assertEqual(list(parser[section]), list(keys), section)
        fields = {field for keys in SETTINGS_KEYS.values() for field in keys.values()}
        self.assertEqual(fields | {"mime_types"},
                         {item.name for item in dataclasses.fields(Config)})

    def test_every_key_has_a_comment_above_it(self) -> None:
        previous = ""
        for line in SHIPPED_SETTINGS.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith(("#", ";", "[")):
                self.assertTrue(previous.startswith("#"), f"no comment above {line!r}")
            if line:
                previous = line

    def test_values_equal_the_builtin_defaults(self) -> None:
        folder = make_site(self)
        shutil.copy(SHIPPED_SETTINGS, folder / "settings.conf")
        config = load_config(str(folder / "settings.conf"))
        self.assertEqual(config.document_root, str(folder / "public_html"))
        self.assertEqual(config.error_pages, str(folder / "error_pages"))
        self.assertEqual(config.templates, str(folder / "other_templates"))
        self.assertEqual(config.mime_types, {".mjs": "text/javascript",
                                             ".webmanifest": "application/manifest+json"})
        for item in dataclasses.fields(Config):
            if item.name not in {"document_root", "error_pages", "templates", "mime_types"}:
                self.assertEqual(getattr(config, item.name), getattr(Config(), item.name),
                                 item.name)


if __name__ == "__main__":
    unittest.main()
