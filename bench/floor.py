"""The floor of a thread-per-connection file server in Python, for ``bench/bench.py``.

A keep-alive file server cut to its system calls: each connection gets a thread; each request
head is read to its blank line and answered at once: a file of the served folder from memory
(read once, at start), a range of it with ``os.sendfile``, or a fixed 404.  It reads nothing of
the head but the path (less its query), a ``Range: bytes=a-b`` and a ``Connection: close``; it
checks nothing and logs nothing.  It serves only what the benchmark sends: not a server to use.

What a request costs it, next to Nex on the same core, is what serving a file costs in this
design under CPython at all: the system calls, the threads' turns at the interpreter lock, and
the interpreter's few steps per request.  A goal that asks more of Nex than of this floor
cannot be met by any change inside Nex's stages.

Usage: ``python3 bench/floor.py ROOT``; prints ``http://127.0.0.1:PORT/`` once it listens.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
from typing import Dict, Optional, Tuple

_HEAD_END = b"\r\n\r\n"
_RANGE = re.compile(rb"\r\nrange: *bytes=(\d+)-(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection: *close", re.IGNORECASE)
_NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 10\r\n\r\nNot found\n")
_MSG_MORE = getattr(socket, "MSG_MORE", 0)


def load(root: str) -> Dict[bytes, Tuple[bytes, int, int]]:
    """Each regular file at the top of ``root`` by its path: ``(bytes, descriptor, size)``."""
    files = {}
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            files[b"/" + name.encode()] = (data, os.open(path, os.O_RDONLY), len(data))
    return files


def answer(sock: socket.socket, head: bytes, files: Dict[bytes, Tuple[bytes, int, int]]
           ) -> bool:
    """Send the answer to ``head``; return whether the connection stays open."""
    path = head[head.index(b" ") + 1:head.index(b" HTTP/")].partition(b"?")[0]
    found: Optional[Tuple[bytes, int, int]] = files.get(path)
    if found is None:
        sock.sendall(_NOT_FOUND)
    else:
        data, descriptor, size = found
        wanted = _RANGE.search(head)
        if wanted is None:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (size, data))
        else:
            first, last = int(wanted.group(1)), min(int(wanted.group(2)), size - 1)
            count = last - first + 1
            sock.send(b"HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream"
                      b"\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n"
                      % (first, last, size, count), _MSG_MORE)
            while count:
                sent = os.sendfile(sock.fileno(), descriptor, first, count)
                first += sent
                count -= sent
    return _CLOSE.search(head) is None


def serve(sock: socket.socket, files: Dict[bytes, Tuple[bytes, int, int]]) -> None:
    """Answer the requests of one connection until the client closes it."""
    buffer = b""
    try:
        with sock:
            while True:
                while _HEAD_END not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(_HEAD_END)
                if not answer(sock, head, files):
                    return
    except OSError:
        pass


def main() -> None:
    files = load(sys.argv[1])
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(f"http://127.0.0.1:{listener.getsockname()[1]}/", flush=True)
    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(sock, files), daemon=True).start()


if __name__ == "__main__":
    main()
