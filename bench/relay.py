"""The floor of a thread-per-connection proxy in Python, for ``bench/proxies.py``.

A forward proxy cut to its system calls: each client connection gets a thread and one
connection to the origin; each request head is read, its absolute-form target cut to the
path, and sent on; the response is read to its ``Content-Length`` and sent back.  No
parsing beyond that, no checks, no log, no pool.  It serves only what the benchmark sends (a
``GET`` without a body, answered with ``Content-Length``) and is not a proxy to use.

What it costs per request, next to Nex on the same core, is what the design itself costs
under CPython's interpreter lock: the threads' turns at the lock, which no change inside
Nex's stages can remove.

Usage: ``python3 bench/relay.py PORT ORIGIN_PORT`` (both on 127.0.0.1).
"""

from __future__ import annotations

import socket
import sys
import threading

_HEAD_END = b"\r\n\r\n"


def _read_head(sock: socket.socket, buffer: bytes) -> tuple:
    """``(head, rest)`` once ``buffer`` plus what ``sock`` sends holds a whole head; None at
    EOF."""
    while _HEAD_END not in buffer:
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = buffer.partition(_HEAD_END)
    return head, rest


def _content_length(head: bytes) -> int:
    """The response's Content-Length (0 when it has none)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def relay(client: socket.socket, origin_port: int) -> None:
    """Serve one client connection until it closes (wrk resets its connections at the end)."""
    try:
        with client, socket.create_connection(("127.0.0.1", origin_port)) as origin:
            _serve(client, origin)
    except OSError:
        pass


def _serve(client: socket.socket, origin: socket.socket) -> None:
    """Relay requests from ``client`` and responses from ``origin`` until either closes."""
    pending = b""
    while True:
        got = _read_head(client, pending)
        if got is None:
            return
        head, pending = got
        line, _, fields = head.partition(b"\r\n")
        method, target, version = line.split(b" ")
        path = b"/" + target.split(b"/", 3)[3] if target.startswith(b"http://") else target
        origin.sendall(b"%s %s %s\r\n%s\r\n\r\n" % (method, path, version, fields))
        answer = _read_head(origin, b"")
        if answer is None:
            return
        response_head, body = answer
        length = _content_length(response_head)
        while len(body) < length:
            body += origin.recv(65536)
        client.sendall(response_head + _HEAD_END + body)


def main() -> None:
    port, origin_port = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=relay, args=(client, origin_port), daemon=True).start()


if __name__ == "__main__":
    main()
