"""The command line: flags and settings file in, a validated Config to the server out."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Any, Dict, List, Optional, Union

from nex import __version__
from nex.config import ConfigError, load_config, shipped_settings

_DESCRIPTION = "Nex: a multi-threaded HTTP/1.1 file server."


def _epilog(default_config: Optional[str]) -> str:
    """The text after the flags: where settings come from, for a checkout or an install."""
    if default_config:
        source = (f"Without --config Nex reads {default_config} when it exists, else it runs"
                  " on built-in defaults and serves the current folder.")
    else:
        source = "Without --config Nex runs on built-in defaults and serves the current folder."
    return textwrap.fill(
        "Every other setting (time-outs, limits, listings, symlinks, caching, compression,"
        " logging, media types) lives in a settings file, an INI file whose comments explain"
        " each key: --write-config FILE writes one with every key at its default, to edit and"
        f" pass to --config.  {source}  Flags win over the file.  A bad setting stops Nex"
        " before it listens, with a message naming the file, section, key and value, and exit"
        " status 2.", width=90)


def _parser(default_config: Optional[str]) -> argparse.ArgumentParser:
    """The argument parser; ``default_config`` is named in the help of --config."""
    parser = argparse.ArgumentParser(
        description=_DESCRIPTION, epilog=_epilog(default_config),
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
    default_help = f"{default_config} when it exists" if default_config else "none"
    parser.add_argument(
        "--config", metavar="FILE",
        help=f"settings file to read (default: {default_help})")
    parser.add_argument(
        "--write-config", metavar="FILE",
        help="write the documented settings file, every key at its default, to FILE and exit;"
             " an existing FILE is never overwritten")
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
    if args.write_config is not None:
        return write_config(args.write_config)
    config_path = args.config
    if config_path is None and default is not None and os.path.exists(default):
        config_path = default
    overrides: Dict[str, Any] = {}
    for name, value in (("port", args.port), ("bind", args.bind),
                        ("document_root", args.root)):
        if value is not None:
            overrides[name] = value
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        print(f"nex: {error}", file=sys.stderr)
        return 2
    from nex.server import serve  # only now: checking settings needs no server
    return serve(config)


def write_config(path: str) -> int:
    """Write the settings.conf shipped with Nex to ``path``, which must not exist yet.

    Returns 0, or 2 after printing ``nex: <message>`` when ``path`` exists or cannot be written.
    """
    try:
        with open(shipped_settings(), "rb") as shipped:
            text = shipped.read()
    except OSError as error:
        print(f"nex: cannot read the shipped settings file {error.filename}: {error.strerror}",
              file=sys.stderr)
        return 2
    try:
        with open(path, "xb") as out:
            out.write(text)
    except FileExistsError:
        print(f"nex: {path} already exists; Nex does not overwrite it (remove it or name"
              " another file)", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"nex: cannot write {path}: {error.strerror}", file=sys.stderr)
        return 2
    print(f"Wrote {path}.  Set document_root in it (or pass --root), then start Nex with"
          f" --config {path}")
    return 0
