"""The command line: flags and settings file in, a validated Config to the server out."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional, Union

from nex import __version__
from nex.config import ConfigError, load_config
from nex.tls import SELF_SIGNED_NAMES, TLSError, certificate_fingerprint, make_self_signed

_DESCRIPTION = "Nex: a multi-threaded HTTP/1.1 file server."

_EPILOG = """\
Every other setting (time-outs, limits, listings, symlinks, caching, compression, logging,
media types) lives in settings.conf, an INI file whose comments explain each key.  Without
--config Nex reads settings.conf next to server.py when it exists, else it runs on built-in
defaults and serves the current folder.  Flags win over the file.  A bad setting stops Nex
before it listens, with a message naming the file, section, key and value, and exit status 2.
"""


def _parser(default_config: Optional[str]) -> argparse.ArgumentParser:
    """The argument parser; ``default_config`` is named in the help of --config."""
    parser = argparse.ArgumentParser(
        description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--port", metavar="N",
        help="TCP port to listen on, 0 to 65535; 0 picks any free port, which Nex prints at"
             " start-up (default: [server] port, else 8080)")
    parser.add_argument(
        "--bind", metavar="ADDR",
        help="address to listen on: an IPv4 or IPv6 address (::1, 0.0.0.0, ::) or localhost"
             " (default: [server] bind, else 127.0.0.1)")
    parser.add_argument(
        "--root", metavar="DIR",
        help="folder to serve; a relative path starts at the current folder"
             " (default: [server] document_root, else the current folder)")
    parser.add_argument(
        "--tls-cert", metavar="FILE",
        help="serve HTTPS with this PEM certificate (the chain after it); needs --tls-key"
             " (default: [tls] certificate, else plain HTTP)")
    parser.add_argument(
        "--tls-key", metavar="FILE",
        help="the PEM private key of --tls-cert, without a passphrase (default: [tls] key)")
    parser.add_argument(
        "--tls-self-signed", action="store_true",
        help="serve HTTPS with a throw-away self-signed certificate for localhost,"
             " 127.0.0.1 and ::1, made at start-up (for local testing)")
    default_help = f"{default_config} when it exists" if default_config else "none"
    parser.add_argument(
        "--config", metavar="FILE",
        help=f"settings file to read (default: {default_help})")
    parser.add_argument("--version", action="version", version=f"Nex {__version__}")
    return parser


def main(argv: Optional[List[str]] = None,
         default_config: Union[str, "os.PathLike[str]", None] = None) -> int:
    """Parse ``argv``, load the settings and run the server; return the exit status.

    ``default_config`` is the settings file read when --config is not given and the file
    exists.  A bad setting prints ``nex: <message>`` to standard error and returns 2.
    """
    default = os.fspath(default_config) if default_config is not None else None
    try:
        args = _parser(default).parse_args(argv)
    except SystemExit as stop:  # --help, --version or a usage error, already printed
        return int(stop.code or 0)
    config_path = args.config
    if config_path is None and default is not None and os.path.exists(default):
        config_path = default
    overrides: Dict[str, Any] = {}
    for name, value in (("port", args.port), ("bind", args.bind),
                        ("document_root", args.root), ("tls_certificate", args.tls_cert),
                        ("tls_key", args.tls_key)):
        if value is not None:
            overrides[name] = value
    if not args.tls_self_signed:
        return _load_and_serve(config_path, overrides)
    if args.tls_cert is not None or args.tls_key is not None:
        print("nex: --tls-self-signed makes its own certificate and key; leave out --tls-cert"
              " and --tls-key", file=sys.stderr)
        return 2
    folder = tempfile.mkdtemp(prefix="nex-tls-")
    try:
        try:
            certificate, key = make_self_signed(folder)
        except TLSError as error:
            print(f"nex: {error}", file=sys.stderr)
            return 2
        overrides.update(tls_certificate=certificate, tls_key=key)
        notice = (f"Self-signed certificate for {', '.join(SELF_SIGNED_NAMES)} (for testing"
                  f" only): {certificate}\n  SHA-256 fingerprint "
                  f"{certificate_fingerprint(certificate)}")
        return _load_and_serve(config_path, overrides, notice)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _load_and_serve(config_path: Optional[str], overrides: Dict[str, Any],
                    notice: str = "") -> int:
    """Load the settings with ``overrides``, print ``notice`` and serve; 2 on a bad setting."""
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        print(f"nex: {error}", file=sys.stderr)
        return 2
    if notice:
        print(notice, flush=True)
    from nex.server import serve  # only now: checking settings needs no server
    return serve(config)
