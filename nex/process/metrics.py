"""Metrics: counters every process keeps in shared memory, served in Prometheus' text format.

Each process that serves (the lone server, or each worker) counts in a *row* of its own of
64-bit integers in an anonymous shared ``mmap``.  The supervisor maps the table before it
forks and gives each new worker a free row, so every worker writes only its own row and any
worker answering a scrape sums all rows: the figures cover every worker without asking
anyone.  When a worker has exited, the supervisor adds its counters to row 0 (which also
holds the worker restarts) and clears the row for the next worker: counters carry on across
restarts and reloads, and the gauges of a worker that died with connections open do not
linger.  A scrape sums a copy of the table taken between two such folds (a sequence number
before the rows counts the folds begun and ended), so that no counter it shows is ever below
one shown before: Prometheus would take the dip for a restart and count the whole figure
again.  Within a process a lock guards the row, so no figure relies on the GIL; the
proxy's DNS cache and origin pool count into a slice of the row of their own (their
*tally*, :func:`Metrics.proxy_tally`), each under the lock it already holds.

A response to a request for the proxy also counts its outcome (:func:`proxy_outcome`) and,
when the origin answered or a tunnel ran, the bytes it relayed each way, in the one update
of the row that counts every response.

With ``[metrics] enabled`` the path ``[metrics] path`` (default ``/.nex/metrics``) answers
GET and HEAD from the ``[metrics] allowed_clients`` networks; anyone else gets the site's
ordinary answer for that path.  With ``[metrics] port`` the path is answered on that port
instead (:func:`serve_scrapes`, a thread in each serving process, all accepting on one
socket), and nothing else is.  Every name is in the ``nex_`` namespace.
"""

from __future__ import annotations

import mmap
import re
import socket
import ssl
import threading
from datetime import datetime, timezone
from time import sleep
from typing import Callable, Iterable, List, Optional, Tuple

from nex.addresses import in_networks, parse_address
from nex.files.archive import wants_archive
from nex.http.errors import HTTPError
from nex.http.framing import HeadLimits
from nex.http.request import Request, parse_head
from nex.http.response import Response, write_response
from nex.site.clients import parse_networks
from nex.proxy.figures import (DNS_ENTRIES, DNS_FAILURES, DNS_HITS, DNS_LOOKUPS, FAILURES,
                               ORIGINS_OPENED, ORIGINS_REUSED, OUTCOMES, REFUSALS, TALLY_GAUGES,
                               TALLY_SIZE, Tally)
from nex.process.config import Config

HANDLERS = ("file", "listing", "zip", "upload", "proxy", "tunnel", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
CAPS = ("max_connections", "max_connections_per_client")
#: Rows besides the supervisor's row 0: a worker and its replacement may run side by side.
MAX_ROWS = 2 * 256
_REQUESTS = {(handler, status_class): index
             for index, (handler, status_class) in enumerate(
                 (h, c) for h in HANDLERS for c in STATUS_CLASSES)}
_BYTES_IN = len(_REQUESTS)
_BYTES_OUT = _BYTES_IN + 1
_CONNECTIONS_OPEN = _BYTES_IN + 2
_REFUSED = {cap: _BYTES_IN + 3 + index for index, cap in enumerate(CAPS)}
_TUNNELS_OPEN = _BYTES_IN + 3 + len(CAPS)
_LOG_DROPPED = _TUNNELS_OPEN + 1
_WORKER_RESTARTS = _LOG_DROPPED + 1
_OUTCOMES = {outcome: _WORKER_RESTARTS + 1 + index for index, outcome in enumerate(OUTCOMES)}
_PROXY_UP = _WORKER_RESTARTS + 1 + len(OUTCOMES)  # client to origin
_PROXY_DOWN = _PROXY_UP + 1  # origin to client
_TUNNELS_OPENED = _PROXY_DOWN + 1
_TALLY = _TUNNELS_OPENED + 1
_FIELDS = _TALLY + TALLY_SIZE
_GAUGES = frozenset((_CONNECTIONS_OPEN, _TUNNELS_OPEN,
                     *(_TALLY + field for field in TALLY_GAUGES)))
_PROXY_HANDLERS = frozenset(("proxy", "tunnel"))
_REFUSALS = frozenset(REFUSALS)
_FAILURES = frozenset(FAILURES)
#: Outcomes whose bytes went through: the origin answered, or a tunnel was granted.
_RELAYED = frozenset(("forwarded", "tunnel", "websocket"))
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How often a scrape tries for a copy of the table between folds, and the pause between
#: tries: a fold takes microseconds, so only a supervisor stopped mid-fold uses them all.
SNAPSHOT_TRIES = 100
SNAPSHOT_PAUSE = 0.001
#: Seconds a scrape on the metrics port may take to send its request and read the answer.
SCRAPE_TIMEOUT = 5.0
_SCRAPE_HEAD_LIMIT = 16 * 1024
_ACCEPT_POLL_SECONDS = 0.5
_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")


class MetricsTable:
    """The shared table: ``rows`` rows for serving processes plus the supervisor's row 0,
    after the fold sequence number (odd while the supervisor folds a row into row 0)."""

    def __init__(self, rows: int = MAX_ROWS) -> None:
        self.rows = rows
        self._memory = mmap.mmap(-1, (1 + (rows + 1) * _FIELDS) * 8,
                                 flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        #: Each row's fields, one after another, from row 0.
        self.values = memoryview(self._memory).cast("q")[1:]
        #: Folds begun and ended (:meth:`give_back`): odd while one is under way.
        self.sequence = memoryview(self._memory).cast("q")[:1]
        self._free = list(range(rows, 0, -1))

    def totals(self) -> List[int]:
        """Each field summed over every row, from a copy taken while no row was being
        folded (or, should the supervisor stop in the middle of a fold, the last copy)."""
        for _ in range(SNAPSHOT_TRIES):
            before = self.sequence[0]
            copied = self._copy()
            if before % 2 == 0 and self.sequence[0] == before:
                break
            sleep(SNAPSHOT_PAUSE)
        return [sum(copied[field::_FIELDS]) for field in range(_FIELDS)]

    def _copy(self) -> List[int]:
        """Every row's fields, each read whole: a plain copy of the memory (``memcpy``) may
        read a field that a worker is changing in pieces of less than eight bytes."""
        return self.values.tolist()

    def take_row(self) -> int:
        """A free row for a new worker (the supervisor's row 0 when none is left)."""
        return self._free.pop() if self._free else 0

    def give_back(self, row: int) -> None:
        """The worker of ``row`` has exited: keep its counters in row 0, free the row."""
        if row == 0:
            return
        values, base = self.values, row * _FIELDS
        self.sequence[0] += 1
        for field in range(_FIELDS):
            if field not in _GAUGES:
                values[field] += values[base + field]
            values[base + field] = 0
        self.sequence[0] += 1
        self._free.append(row)

    def count_restart(self) -> None:
        """One worker restarted (the supervisor's own figure)."""
        self.values[_WORKER_RESTARTS] += 1


class Metrics:
    """One process's counters, in row ``row`` of ``table``, and the page that shows all.

    ``certificate`` is the TLS certificate file whose expiry is shown (empty: none); the
    proxy's families are shown when ``proxy`` is on.
    """

    def __init__(self, table: MetricsTable, row: int, *, path: str = "/.nex/metrics",
                 allowed_clients: Iterable[str] = ("127.0.0.0/8", "::1"),
                 certificate: str = "", separate_port: bool = False,
                 proxy: bool = False) -> None:
        self.table = table
        self.path = path
        self._separate_port = separate_port
        self._proxy = proxy
        self._base = row * _FIELDS
        self._allowed = parse_networks(allowed_clients)
        self._certificate = certificate
        self._lock = threading.Lock()

    def _add(self, field: int, amount: int = 1) -> None:
        with self._lock:
            self.table.values[self._base + field] += amount

    def request_done(self, request: Optional[Request], response: Response, sent: int,
                     received: int, head_size: int = 0) -> None:
        """Count one logged response with ``sent`` body bytes out and ``received`` in, of
        which ``head_size`` were the request head; a scrape of the metrics path counts as
        ``other``.  A response to a request for the proxy counts its outcome too, and when
        its bytes went through (:data:`_RELAYED`), ``received - head_size`` bytes from the
        client to the origin and ``sent`` back."""
        if request is not None and request.path == self.path:
            handler = "other"
        else:
            handler = handler_of(request, response)
        status_class = STATUS_CLASSES[min(max(response.status // 100, 1), 5) - 1]
        base = self._base
        index = base + _REQUESTS[handler, status_class]
        outcome = proxy_outcome(request, response) if handler in _PROXY_HANDLERS else None
        values = self.table.values
        with self._lock:
            values[index] += 1
            values[base + _BYTES_IN] += received
            values[base + _BYTES_OUT] += sent
            if outcome is not None:
                values[base + _OUTCOMES[outcome]] += 1
                if outcome in _RELAYED:
                    values[base + _PROXY_UP] += received - head_size
                    values[base + _PROXY_DOWN] += sent

    def connection_opened(self) -> None:
        """A connection was admitted."""
        self._add(_CONNECTIONS_OPEN)

    def connection_closed(self) -> None:
        """An admitted connection ended."""
        self._add(_CONNECTIONS_OPEN, -1)

    def refused(self, cap: str) -> None:
        """A connection was refused because ``cap`` (one of :data:`CAPS`) was reached."""
        self._add(_REFUSED[cap])

    def tunnel_opened(self) -> None:
        """A tunnel (CONNECT or WebSocket) started relaying."""
        values = self.table.values
        with self._lock:
            values[self._base + _TUNNELS_OPEN] += 1
            values[self._base + _TUNNELS_OPENED] += 1

    def tunnel_closed(self) -> None:
        """A tunnel ended."""
        self._add(_TUNNELS_OPEN, -1)

    def proxy_tally(self) -> Tally:
        """This process's slice of the table for the proxy's DNS cache and origin pool to
        count into (:mod:`nex.proxy.figures`)."""
        start = self._base + _TALLY
        return self.table.values[start:start + TALLY_SIZE]

    def log_line_dropped(self) -> None:
        """The logger dropped a line (its buffer was full)."""
        self._add(_LOG_DROPPED)

    def answer(self, request: Request, client: str) -> Optional[Response]:
        """The metrics page when ``request`` to the site's port asks for it from an allowed
        ``client``; None when the request is for the site."""
        return None if self._separate_port else self.page(request, client)

    def page(self, request: Request, client: str) -> Optional[Response]:
        """The metrics page when ``request`` asks for it from an allowed ``client``."""
        if request.path != self.path or request.method not in ("GET", "HEAD"):
            return None
        try:
            address = parse_address(client)
        except ValueError:
            return None
        # A dual-stack metrics port sees IPv4 scrapers as ::ffff:a.b.c.d: both forms count.
        if not in_networks(address, self._allowed):
            return None
        body = self.render().encode("utf-8")
        return Response(200, [("Content-Type", _CONTENT_TYPE), ("Cache-Control", "no-store")],
                        (body,))

    def render(self) -> str:
        """Every figure, summed over the processes, in the Prometheus text format."""
        total = self.table.totals().__getitem__
        lines: List[str] = []
        family(lines, "nex_requests_total", "counter", "Responses sent, by handler and status "
               "class.", [(f'handler="{handler}",status_class="{status_class}"', total(index))
                          for (handler, status_class), index in _REQUESTS.items()])
        family(lines, "nex_received_bytes_total", "counter",
               "Bytes received from clients: heads, bodies, tunnels.", [("", total(_BYTES_IN))])
        family(lines, "nex_sent_bytes_total", "counter",
               "Body bytes sent to clients.", [("", total(_BYTES_OUT))])
        family(lines, "nex_connections_open", "gauge", "Client connections open.",
               [("", total(_CONNECTIONS_OPEN))])
        family(lines, "nex_connections_refused_total", "counter",
               "Connections refused at a cap, by the setting of the cap.",
               [(f'cap="{cap}"', total(index)) for cap, index in _REFUSED.items()])
        family(lines, "nex_tunnels_open", "gauge", "Tunnels relaying (CONNECT and WebSocket).",
               [("", total(_TUNNELS_OPEN))])
        family(lines, "nex_tunnels_opened_total", "counter",
               "Tunnels (CONNECT and WebSocket) that started relaying.",
               [("", total(_TUNNELS_OPENED))])
        family(lines, "nex_log_lines_dropped_total", "counter",
               "Log lines dropped because the log could not keep up.",
               [("", total(_LOG_DROPPED))])
        family(lines, "nex_worker_restarts_total", "counter",
               "Workers restarted after they ended unasked.", [("", total(_WORKER_RESTARTS))])
        if self._proxy:
            _render_proxy(lines, total)
        expiry = certificate_expiry(self._certificate) if self._certificate else None
        if expiry is not None:
            family(lines, "nex_tls_certificate_expiry_timestamp_seconds", "gauge",
                   "When the TLS certificate expires, in seconds since the epoch.",
                   [("", int(expiry))])
        return "\n".join(lines) + "\n"


def process_metrics(config: Config, table: MetricsTable, row: int) -> Optional[Metrics]:
    """The counters of the process serving with ``row`` of ``table``, when ``config`` has
    metrics enabled; else None."""
    if not config.metrics_enabled:
        return None
    return Metrics(table, row, path=config.metrics_path,
                   allowed_clients=config.metrics_allowed_clients,
                   certificate=config.tls_certificate,
                   separate_port=config.metrics_port is not None,
                   proxy=config.proxy_enabled)


def start_scrape_server(listener: Optional[socket.socket], metrics: Optional[Metrics],
                        stopping: threading.Event) -> Optional[threading.Thread]:
    """Start :func:`serve_scrapes` in a thread when there is a metrics port."""
    if listener is None or metrics is None:
        return None
    thread = threading.Thread(target=serve_scrapes, args=(listener, metrics, stopping),
                              name="metrics", daemon=True)
    thread.start()
    return thread


def serve_scrapes(listener: socket.socket, metrics: Metrics, stopping: threading.Event) -> None:
    """Answer scrapes on the metrics port, one at a time, until ``stopping`` is set.

    The listener may be shared with other processes: it waits for clients with a time-out
    (a poll), so that ``stopping`` is seen and no process blocks in ``accept``.  Each scrape
    gets :data:`SCRAPE_TIMEOUT` seconds, one response and the connection closed.
    """
    listener.settimeout(_ACCEPT_POLL_SECONDS)
    while not stopping.is_set():
        try:
            sock, address = listener.accept()
        except OSError:  # the poll timed out, another worker took the client, a reset
            continue
        with sock:
            try:
                _answer_scrape(sock, address[0], metrics)
            except OSError:
                pass  # the scraper went away or was too slow


def _answer_scrape(sock: socket.socket, client: str, metrics: Metrics) -> None:
    sock.settimeout(SCRAPE_TIMEOUT)
    head = bytearray()
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk or len(head) > _SCRAPE_HEAD_LIMIT:
            return
        head += chunk
    request = None
    try:
        request = parse_head(bytes(head[:head.index(b"\r\n\r\n") + 4]), HeadLimits())
        response = metrics.page(request, client) or Response(
            404, [("Content-Type", "text/plain; charset=utf-8")], (b"Not Found\n",))
    except HTTPError as error:
        response = Response(error.status, [("Content-Type", "text/plain; charset=utf-8")],
                            (error.detail.encode("utf-8") + b"\n",))
    write_response(sock, response, head_only=request is not None and request.method == "HEAD",
                   keep_alive=False)



def _render_proxy(lines: List[str], total: Callable[[int], int]) -> None:
    """Append the proxy's families, from the per-request figures and the tally."""
    family(lines, "nex_proxy_requests_total", "counter",
           "Answers to requests for the proxy, by outcome: forwarded, a tunnel, the rule that"
           " refused it, the upstream failure, other.",
           [(f'outcome="{outcome}"', total(index)) for outcome, index in _OUTCOMES.items()])
    family(lines, "nex_proxy_bytes_total", "counter",
           "Bytes the proxy relayed: the bodies of forwarded requests and responses, and"
           " what tunnels carried (counted as each ends).",
           [('direction="client_to_origin"', total(_PROXY_UP)),
            ('direction="origin_to_client"', total(_PROXY_DOWN))])
    family(lines, "nex_proxy_dns_cache_hits_total", "counter",
           "Look-ups the proxy's DNS cache answered (remembered failures too).",
           [("", total(_TALLY + DNS_HITS))])
    family(lines, "nex_proxy_dns_lookups_total", "counter",
           "DNS look-ups the proxy made (cache misses), counted as they end.",
           [("", total(_TALLY + DNS_LOOKUPS))])
    family(lines, "nex_proxy_dns_lookup_failures_total", "counter",
           "DNS look-ups the proxy made that found no address.",
           [("", total(_TALLY + DNS_FAILURES))])
    family(lines, "nex_proxy_dns_cache_entries", "gauge",
           "Names held in the proxy's DNS caches (one per worker).",
           [("", total(_TALLY + DNS_ENTRIES))])
    family(lines, "nex_proxy_origin_connections_total", "counter",
           "Connections to origins for forwarded requests: opened, or reused from the pool.",
           [('how="opened"', total(_TALLY + ORIGINS_OPENED)),
            ('how="reused"', total(_TALLY + ORIGINS_REUSED))])


def proxy_outcome(request: Optional[Request], response: Response) -> str:
    """The outcome of a response to a request for the proxy: one of
    :data:`nex.proxy.figures.OUTCOMES`, ``other`` for a token outside them."""
    if response.tunnel is not None:
        return "tunnel" if request is not None and request.method == "CONNECT" else "websocket"
    if response.forwarded:
        return "forwarded"
    token = response.refusal or response.failure or "other"
    return token if token in _REFUSALS or token in _FAILURES else "other"


def family(lines: List[str], name: str, kind: str, text: str,
           samples: List[Tuple[str, int]]) -> None:
    """Append one metric family (HELP, TYPE and its samples) to ``lines``."""
    lines.append(f"# HELP {name} {text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        lines.append(f"{name}{{{labels}}} {value}" if labels else f"{name} {value}")


def handler_of(request: Optional[Request], response: Response) -> str:
    """Which kind of work a response was: one of :data:`HANDLERS`."""
    if response.tunnel is not None or (request is not None and request.method == "CONNECT"):
        return "tunnel"
    if request is None:
        return "other"
    if response.forwarded or response.upstream is not None or not request.target.startswith(
            ("/", "*")):
        return "proxy"
    if request.method in ("PUT", "POST"):
        return "upload"
    if request.method not in ("GET", "HEAD"):
        return "other"
    if request.path.endswith("/"):
        return "zip" if wants_archive(request.query) else "listing"
    return "file"


def certificate_expiry(path: str) -> Optional[float]:
    """When the first certificate in the PEM file ``path`` expires (seconds since the
    epoch), from its DER encoding; None when the file cannot be read or parsed."""
    try:
        with open(path, encoding="ascii", errors="replace") as pem:
            match = _PEM_CERTIFICATE.search(pem.read())
        if match is None:
            return None
        der = ssl.PEM_cert_to_DER_cert(match.group())
        return _not_after(der)
    except (OSError, ValueError, IndexError):
        return None


def _not_after(der: bytes) -> float:
    """The notAfter time of a DER X.509 certificate (RFC 5280 §4.1)."""
    _, certificate, _ = _element(der, 0)      # Certificate ::= SEQUENCE { tbsCertificate, ...
    _, position, _ = _element(der, certificate)
    if der[position] == 0xA0:                  # [0] EXPLICIT version, when not v1
        position = _element(der, position)[2]
    for _ in range(3):                         # serialNumber, signature, issuer
        position = _element(der, position)[2]
    _, validity, _ = _element(der, position)   # validity ::= SEQUENCE { notBefore, notAfter }
    tag, value, value_end = _element(der, _element(der, validity)[2])
    text = der[value:value_end].decode("ascii")
    if tag == 0x17:    # UTCTime YYMMDDHHMMSSZ; years 50-99 are 19xx (RFC 5280 §4.1.2.5.1)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError("notAfter is not a time")
    moment = datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _element(der: bytes, position: int) -> Tuple[int, int, int]:
    """The DER element at ``position``: (tag, where its value starts, where it ends)."""
    tag = der[position]
    first = der[position + 1]
    if first < 0x80:
        length, start = first, position + 2
    else:
        count = first & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("DER length out of range")
        length = int.from_bytes(der[position + 2:position + 2 + count], "big")
        start = position + 2 + count
    if start + length > len(der):
        raise ValueError("DER element runs past the end")
    return tag, start, start + length
