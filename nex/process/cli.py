"""The command line: flags and settings file in, a validated Config to the server out."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import ipaddress
import os
import shutil
import sys
import tempfile
import textwrap
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple, Union

from nex import __version__
from nex.files.leftovers import remove_stale_uploads
from nex.site.passwords import check_password, check_user_name, hash_password
from nex.process import values
from nex.process.config import Config, ConfigError, load_config, shipped_settings
from nex.process.tls import SELF_SIGNED_NAMES, TLSError, certificate_fingerprint, \
    make_self_signed

_DESCRIPTION = "Nex: a multi-threaded HTTP/1.1 file server."


def _epilog(default_config: Optional[str]) -> str:
    """The text after the flags: where settings come from, for a checkout or an install."""
    if default_config:
        source = (f"Without --config Nex reads {default_config} when it exists, else it runs"
                  " on built-in defaults and serves the current folder.")
    else:
        source = "Without --config Nex runs on built-in defaults and serves the current folder."
    return textwrap.fill(
        "Every other setting (time-outs, limits, listings, folder downloads, symlinks,"
        " upload limits, caching, compression, CORS origins, which paths need a login,"
        " logging, media types, the proxy's rules)"
        " lives in a settings file, an INI file whose comments explain each key:"
        " --write-config FILE writes one with every key at its default, to edit and pass to"
        f" --config.  {source}  Flags win over the file.  A bad setting stops Nex before it"
        " listens, with a message naming the file, section, key and value, and exit status 2.",
        width=90, break_on_hyphens=False)


def _parser(default_config: Optional[str]) -> argparse.ArgumentParser:
    """The argument parser; ``default_config`` is named in the help of --config."""
    parser = argparse.ArgumentParser(
        description=_DESCRIPTION, epilog=_epilog(default_config), allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "port_argument", metavar="PORT", nargs="?",
        help="TCP port to listen on, as in python3 -m http.server 8000; the same as --port")
    parser.add_argument(
        "--port", metavar="N",
        help="TCP port to listen on, 0 to 65535; 0 picks any free port, which Nex prints at"
             " start-up (default: [server] port, else 8080)")
    parser.add_argument(
        "-b", "--bind", metavar="ADDR",
        help="address to listen on: an IPv4 or IPv6 address (::1, 0.0.0.0, ::) or localhost"
             " (default: [server] bind, else 127.0.0.1)")
    parser.add_argument(
        "--workers", metavar="N",
        help="processes serving the port, 1 to 256, or auto for one per CPU; above 1 a"
             " supervisor runs them, restarts one that dies and reloads the settings on"
             " SIGHUP (default: [server] workers, else 1)")
    parser.add_argument(
        "-d", "--directory", "--root", metavar="DIR", dest="root",
        help="folder to serve; a relative path starts at the current folder"
             " (default: [server] document_root, else the current folder)")
    parser.add_argument(
        "-p", "--protocol", metavar="VERSION",
        help="the HTTP version, as in python3 -m http.server: Nex speaks HTTP/1.1, so only"
             " HTTP/1.1 is accepted (HTTP/1.0 clients are still answered as HTTP/1.0)")
    parser.add_argument(
        "--auth-file", metavar="FILE",
        help="users file of USER:hash lines (see --hash-password); the paths in [auth]"
             " protect, by default the whole site, then need a user name and password"
             " (default: [auth] users_file, else no login)")
    parser.add_argument(
        "--proxy", action="store_true", default=None,
        help="act as a forward proxy too ([proxy] enabled): absolute URLs for other hosts"
             " are forwarded, CONNECT opens tunnels; see the [proxy] settings")
    parser.add_argument(
        "--proxy-allow", metavar="NETWORK", action="append", default=[],
        help="let the proxy connect to this IP address or network even though [proxy]"
             " denied_destinations covers it, e.g. 127.0.0.1 to try the proxy against a"
             " local server (repeatable)")
    parser.add_argument(
        "--hash-password", metavar="USER",
        help="read a password from standard input (asked twice on a terminal, and again"
             " until both agree), print a USER:hash line for a users file, and exit")
    parser.add_argument(
        "--cors", action="store_true",
        help="let web pages on any origin read what Nex serves: [cors] allow_origins = *"
             " (default: the settings file, else off)")
    parser.add_argument(
        "--zip", action="store_true",
        help="offer each listed folder as a zip download (?download=zip):"
             " [files] zip_download = yes (default: the settings file, else off)")
    parser.add_argument(
        "--upload", action=argparse.BooleanOptionalAction, default=None,
        help="accept uploads: PUT writes a file, a form POST to a folder stores its files;"
             " --no-upload refuses them with 405 (default: [files] upload, else no)")
    parser.add_argument(
        "--webdav", nargs="?", const="write", choices=("no", "read", "write"),
        help="serve WebDAV so file managers can mount the folder: read, or write (the"
             " default of a bare --webdav; writing also needs --upload)"
             " (default: [files] webdav, else no)")
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
    parser.add_argument(
        "--pid-file", metavar="FILE",
        help="write Nex's process id (with workers, the supervisor's) to FILE while it"
             " runs, removed at exit; kill -HUP $(cat FILE) then reloads the settings")
    default_help = f"{default_config} when it exists" if default_config else "none"
    parser.add_argument(
        "--config", metavar="FILE",
        help=f"settings file to read (default: {default_help})")
    parser.add_argument(
        "--write-config", metavar="FILE",
        help="write the documented settings file, every key at its default, to FILE and exit;"
             " an existing FILE is never overwritten")
    parser.add_argument(
        "--check-config", action="store_true",
        help="check the settings (the file and these flags), the users files, the TLS"
             " certificate and key, the log files and the page templates without serving;"
             " print ok, or the one line that says what is wrong, and exit 0 or 2 (run it"
             " before a reload)")
    parser.add_argument("--version", action="version", version=f"Nex {__version__}")
    return parser


def main(argv: Optional[List[str]] = None,
         default_config: Union[str, "os.PathLike[str]", None] = None) -> int:
    """Parse ``argv``, load the settings and run the server; return the exit status.

    With more than one worker the supervisor runs the server processes, and reads the
    settings again the same way (same file, same flags) on SIGHUP.

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
    if args.write_config is not None:
        return write_config(args.write_config)
    refusal = _check_http_server_habits(args)
    if refusal:
        print(f"nex: {refusal}", file=sys.stderr)
        return 2
    if args.port_argument is not None:
        args.port = args.port_argument
    config_path = args.config
    if config_path is None and default is not None and os.path.exists(default):
        config_path = default
    overrides: Dict[str, Any] = {}
    for name, value in (("port", args.port), ("bind", args.bind),
                        ("document_root", args.root), ("auth_users_file", args.auth_file),
                        ("workers", args.workers), ("upload", args.upload),
                        ("webdav", args.webdav),
                        ("tls_certificate", args.tls_cert), ("tls_key", args.tls_key),
                        ("proxy_enabled", args.proxy)):
        if value is not None:
            overrides[name] = value
    if args.cors:
        overrides["cors_allow_origins"] = "*"
    if args.zip:
        overrides["zip_download"] = True
    try:
        allowed = values.networks(", ".join(args.proxy_allow), "")
    except values.Invalid as error:
        print(f"nex: --proxy-allow: {error}", file=sys.stderr)
        return 2
    if args.check_config:
        return check_config(config_path, overrides)
    if not args.tls_self_signed:
        return _load_and_serve(config_path, overrides, allowed, pid_file=args.pid_file)
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
        # A throw-away certificate must not pin browsers to HTTPS for localhost.
        overrides.update(tls_certificate=certificate, tls_key=key, tls_hsts=0)
        notice = (f"Self-signed certificate for {', '.join(SELF_SIGNED_NAMES)} (for testing"
                  f" only): {certificate}\n  SHA-256 fingerprint "
                  f"{certificate_fingerprint(certificate)}")
        return _load_and_serve(config_path, overrides, allowed, notice, pid_file=args.pid_file)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check_http_server_habits(args: argparse.Namespace) -> str:
    """Why the flags that python3 -m http.server also takes cannot be followed; "" if they can."""
    if args.port_argument is not None and args.port is not None \
            and args.port_argument != args.port:
        return (f"the port is given twice, as {args.port_argument} and as --port {args.port};"
                " give it once")
    if args.protocol is not None and args.protocol != "HTTP/1.1":
        hint = (f"; to listen on port {args.protocol}, give it as {args.protocol} or"
                f" --port {args.protocol}" if args.protocol.isdigit() else "")
        return (f"-p {args.protocol}: -p names the HTTP version, as in python3 -m http.server,"
                f" and Nex speaks HTTP/1.1 only{hint}")
    return ""


def allow_destinations(denied: Tuple[str, ...], allowed: Tuple[str, ...]) -> Tuple[str, ...]:
    """``denied`` networks without the addresses of the ``allowed`` ones (--proxy-allow)."""
    remaining = [ipaddress.ip_network(spec, strict=False) for spec in denied]
    for spec in allowed:
        allow = ipaddress.ip_network(spec, strict=False)
        kept = []
        for network in remaining:
            if network.version != allow.version or not network.overlaps(allow):
                kept.append(network)
            elif not allow.supernet_of(network):  # type: ignore[arg-type]
                kept.extend(network.address_exclude(allow))  # type: ignore[arg-type]
        remaining = kept
    return tuple(str(network) for network in remaining)


def _load_and_serve(config_path: Optional[str], overrides: Dict[str, Any],
                    proxy_allow: Tuple[str, ...] = (), notice: str = "",
                    pid_file: Optional[str] = None) -> int:
    """Load the settings with ``overrides``, let the proxy reach ``proxy_allow``, print
    ``notice`` and serve, with this process's id in ``pid_file`` meanwhile; 2 on a bad
    setting or a pid file that cannot be written."""

    def load() -> Config:
        config = load_config(config_path, overrides)
        if not proxy_allow:
            return config
        return dataclasses.replace(config, proxy_denied_destinations=allow_destinations(
            config.proxy_denied_destinations, proxy_allow))

    try:
        config = load()
    except ConfigError as error:
        print(f"nex: {error}", file=sys.stderr)
        return 2
    if notice:
        print(notice, flush=True)
    if config.upload:  # only then does Nex write (WebDAV's writes need it too)
        removed = remove_stale_uploads(config).message()
        if removed:
            print(removed, flush=True)
    if pid_file is None:
        return _serve(config, load)
    # Imported only now: checking settings needs no server.
    from nex.process.signals import hold_signals, release_signals
    pid = os.getpid()
    hold_signals()  # the server releases them once it handles them
    try:
        _write_pid_file(pid_file, pid)
    except OSError as error:
        release_signals()
        print(f"nex: --pid-file {pid_file}: cannot write it: {error.strerror}", file=sys.stderr)
        return 2
    try:
        return _serve(config, load)
    finally:
        release_signals()
        _remove_pid_file(pid_file, pid)


def _write_pid_file(path: str, pid: int) -> None:
    """Write ``pid`` and a newline to ``path`` whole: a reader never sees half of it."""
    temporary = f"{path}.{pid}.tmp"
    try:
        with open(temporary, "w", encoding="ascii") as out:
            out.write(f"{pid}\n")
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def _remove_pid_file(path: str, pid: int) -> None:
    """Remove the pid file, unless another process has written its own id there since."""
    with contextlib.suppress(OSError):
        with open(path, encoding="ascii") as written:
            if written.read() != f"{pid}\n":
                return
        os.remove(path)


def _serve(config: Config, load: Callable[[], Config]) -> int:
    """Run the server, or the supervisor of its workers, with the loaded ``config``;
    ``load`` reads the settings again for a reload."""
    # Imported only now: checking settings needs no server.
    if config.workers > 1:
        from nex.process.supervisor import supervise
        return supervise(config, load)
    from nex.process.listener import print_start_line
    from nex.process.run import run_server
    return run_server(config, ready=print_start_line, load=load)


def check_config(config_path: Optional[str], overrides: Dict[str, Any]) -> int:
    """--check-config: everything Nex checks before it listens, without listening.

    The settings (with the users files and blacklist file they name), then what a start
    loads before serving, as the supervisor checks it before it starts workers
    (:func:`nex.process.startup.check_startup`: the TLS certificate and key, the log files
    that exist, the page templates).  Prints ``ok`` and returns 0, or prints the one
    ``nex: <message>`` line a start would print and returns 2.
    """
    # Imported only now: checking settings alone needs no server.
    from nex.process.startup import StartupError, check_startup
    try:
        config = load_config(config_path, overrides)
        check_startup(config, create_logs=False)
    except (ConfigError, StartupError) as error:
        print(f"nex: {error}", file=sys.stderr)
        return 2
    print("ok")
    return 0


def _print_user_line(user: str, stdin: TextIO) -> int:
    """--hash-password USER: print ``USER:hash`` for a password read from ``stdin``.

    On a terminal the password is asked for twice without echo, and both again while the two
    differ; otherwise the first line of standard input is the password.  Returns 2 for a user
    name a users file cannot hold, 1 for an empty or unusable password.
    """
    try:
        user = check_user_name(user)
    except ValueError as error:
        print(f"nex: --hash-password {user!r}: {error}", file=sys.stderr)
        return 2
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        while getpass.getpass("Repeat password: ") != password:
            print("The two passwords differ; type them again.", file=sys.stderr)
            password = getpass.getpass("Password: ")
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
