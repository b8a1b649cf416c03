"""The response heads Nex gives to a fixed set of requests, to compare across interpreters.

One file per extension of Nex's media-type table, each fetched with GET, and one request per
spelling of an IPv6 host (IPv4-mapped ones in particular), in the Host field, in an Origin
field and in an absolute-form target to the proxy.  The Date field is blanked; everything
else must come out byte for byte the same on every Python version.

``python -m tests.support.heads ROOT`` (from the checkout's top) prints the heads of the
requests to a Nex serving ``ROOT``, made by :func:`make_root`, run by the same interpreter.
"""

from __future__ import annotations

import os
import re
import sys
from typing import List

from nex.files.typetable import MEDIA_TYPES
from tests.support.server import NexServer, exchange

#: A fixed modification time, so that validators are the same in every run.
MTIME = 1_600_000_000
#: Spellings of IPv6 hosts, IPv4-mapped ones written every way RFC 4291 §2.2 allows.
IPV6_HOSTS = ("[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]", "[::FFFF:7F00:1]",
              "[0:0:0:0:0:ffff:127.0.0.1]", "[::ffff:192.0.2.1]", "[::ffff:c000:201]",
              "[64:ff9b::192.0.2.1]", "[2001:DB8::1]")
#: Settings naming the hosts both ways, so every comparison of spellings is made.
SETTINGS = {
    "server": {"allowed_hosts": "localhost, 127.0.0.1, [::1], [::ffff:127.0.0.1], "
                                "[::ffff:c000:201], [2001:db8::1]"},
    "cors": {"allow_origins": "http://[::ffff:7f00:1], http://[::ffff:192.0.2.1]"},
    "proxy": {"enabled": "yes", "denied_destinations": ""},
}
_DATE = re.compile(rb"\r\nDate: [^\r]*")


def make_root(folder: str) -> None:
    """Fill ``folder`` with ``file.EXT`` for each extension of the table, and ``hello.txt``."""
    names = [f"file{extension}" for extension in sorted(MEDIA_TYPES)] + ["hello.txt"]
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "wb") as out:
            out.write(b"hello, world\n")
        os.utime(path, (MTIME, MTIME))


def requests(port: int) -> List[bytes]:
    """The requests, in order, to a Nex on ``port``."""
    heads = [f"GET /file{extension} HTTP/1.1\r\nHost: localhost"
             for extension in sorted(MEDIA_TYPES)]
    for host in IPV6_HOSTS:
        heads.append(f"GET /hello.txt HTTP/1.1\r\nHost: {host}:{port}")
        heads.append(f"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nOrigin: http://{host}")
        heads.append(f"GET http://{host}:{port}/hello.txt HTTP/1.1\r\nHost: {host}:{port}")
    return [f"{head}\r\nConnection: close\r\n\r\n".encode("ascii") for head in heads]


def collect(root: str) -> List[str]:
    """Each request followed by the head of its response, Date blanked, from a Nex on
    ``root`` run by this interpreter; one string per request."""
    lines = []
    with NexServer(root, SETTINGS) as server:
        port = str(server.port).encode("ascii")
        for request in requests(server.port):
            with server.connect() as sock:
                head = exchange(sock, request).partition(b"\r\n\r\n")[0]
            head = _DATE.sub(b"\r\nDate: -", head).replace(port, b"PORT")
            lines.append(f"{request.replace(port, b'PORT')!r} -> {head!r}")
    return lines


if __name__ == "__main__":
    print("\n".join(collect(sys.argv[1])))
