"""The command line: flags and settings file in, a validated Config to the server out."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, Dict, List, Optional, TextIO, Union

from nex import __version__
from nex.auth import check_password, check_user_name, hash_password
from nex.config import ConfigError, load_config

_DESCRIPTION = "Nex: a multi-threaded HTTP/1.1 file server."

_EPILOG = """\
Every other setting (time-outs, limits, listings, symlinks, caching, compression, logging,
media types, the proxy's rules) lives in settings.conf, an INI file whose comments explain
each key.  Without --config Nex reads settings.conf next to server.py when it exists, else it
runs on built-in defaults and serves the current folder.  Flags win over the file.  A bad
setting stops Nex before it listens, with a message naming the file, section, key and value,
and exit status 2.
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
        "--proxy", action="store_true", default=None,
        help="turn on forward-proxy mode ([proxy] enabled); being built: its settings are"
             " checked, requests are not forwarded yet")
    parser.add_argument(
        "--hash-password", metavar="USER",
        help="read a password from standard input (asked twice on a terminal), print a"
             " USER:hash line for a users file, and exit")
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
    if args.hash_password is not None:
        return _print_user_line(args.hash_password, sys.stdin)
    config_path = args.config
    if config_path is None and default is not None and os.path.exists(default):
        config_path = default
    overrides: Dict[str, Any] = {}
    for name, value in (("port", args.port), ("bind", args.bind),
                        ("document_root", args.root), ("proxy_enabled", args.proxy)):
        if value is not None:
            overrides[name] = value
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        print(f"nex: {error}", file=sys.stderr)
        return 2
    from nex.server import serve  # only now: checking settings needs no server
    return serve(config)


def _print_user_line(user: str, stdin: TextIO) -> int:
    """--hash-password USER: print ``USER:hash`` for a password read from ``stdin``.

    On a terminal the password is asked for twice without echo; otherwise the first line of
    standard input is the password.  Returns 2 for a user name a users file cannot hold, 1
    for an empty or unusable password or two different ones.
    """
    try:
        user = check_user_name(user)
    except ValueError as error:
        print(f"nex: --hash-password {user!r}: {error}", file=sys.stderr)
        return 2
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            print("nex: the two passwords differ", file=sys.stderr)
            return 1
    else:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    try:
        if not password:
            raise ValueError("the password is empty")
        password = check_password(password)
    except ValueError as error:
        print(f"nex: {error}", file=sys.stderr)
        return 1
    print(f"{user}:{hash_password(password)}")
    return 0
