"""The logger: one access line per response, warnings and tracebacks apart.

An access line is Combined Log Format followed by the time taken in microseconds (then, for
Nex's own refusals, ``reason=TOKEN``), or with ``[logging] format = json`` one JSON object
per line.  SIGUSR1 makes :meth:`Logger.reopen` open the log files again under their names,
for log rotation.

Workers never wait for the log.  :meth:`Logger.access` and the other writers only format the
text and append it to a bounded buffer in memory, under a lock that is never held during
I/O; one writer thread drains the buffer.  When the buffer is full (the destination stopped
draining: a stalled pipe, a full disk, a paused terminal) new lines are dropped and counted,
and once the writer has caught up it writes one warning to the error log saying how many.

Access lines wait in the buffer up to :data:`FLUSH_INTERVAL` seconds so that they go out in
batches; on a terminal, and for warnings, tracebacks and messages, the writer starts at once.
Every write is one ``os.write`` of whole lines on the destination's descriptor: a log file is
opened with ``O_APPEND`` and a write to a pipe holds at most ``PIPE_BUF`` bytes, which POSIX
makes atomic, so several processes sharing one log never interleave within a line.

Text that comes from the client is escaped (control bytes as ``\\xHH``) so a request cannot
forge log lines or send escape sequences to a terminal.
"""

from __future__ import annotations

import json
import os
import re
import select
import stat
import sys
import threading
import time
import traceback
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from nex.http.dates import clf_time_now, format_clf_time
from nex.process.config import Config

_UNSAFE_LOG_TEXT = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')
_STATUS_COLOURS = {2: "32", 3: "36", 4: "33", 5: "31"}
#: The longest an access line waits in memory before the writer starts on it.
FLUSH_INTERVAL = 0.5
#: Buffered bytes past which the writer starts without waiting for FLUSH_INTERVAL.
_BATCH_BYTES = 64 * 1024
#: Largest single write to a destination that is not a pipe.
_FILE_WRITE_BYTES = 64 * 1024
_STDOUT, _STDERR = 1, 2


def error_line(level: str, text: str) -> str:
    """A line of the error log: ``[10/Oct/2000:13:55:36 +0000] level: text`` and a newline.

    The one format of the error log's lines, for the logger and the supervisor alike.
    """
    return f"[{format_clf_time(time.time())}] {level}: {text}\n"


def escape_log_text(text: str) -> str:
    """``text`` with quotes and backslashes escaped and control characters as ``\\xHH``."""
    if _UNSAFE_LOG_TEXT.search(text) is None:
        return text
    return _UNSAFE_LOG_TEXT.sub(_escape_char, text)


def first_line(data: Union[bytes, bytearray]) -> str:
    """The start of ``data``'s first line, for logging a request that could not be parsed."""
    end = data.find(b"\r\n", 0, 1024)
    return data[:end if end >= 0 else 1024].lstrip(b"\r\n").decode("latin-1")


def _escape_char(match: "re.Match[str]") -> str:
    char = match.group()
    if char in '"\\':
        return "\\" + char
    return f"\\x{ord(char):02x}"



class Logger:
    """The access and error logs, written by one thread from a bounded buffer.

    ``access`` and ``errors`` are file descriptors open for writing (they may be the same);
    ``owned`` lists those :meth:`close` closes, and ``paths`` names the file of each
    descriptor :meth:`reopen` opens again.  ``buffer_bytes`` bounds the text waiting to be
    written.  With ``json_format`` access lines are JSON objects.
    """

    def __init__(self, access: int, errors: int, *, colour: bool = False,
                 buffer_bytes: int = 1024 * 1024, owned: Sequence[int] = (),
                 paths: Optional[Mapping[int, str]] = None, json_format: bool = False) -> None:
        self._access = access
        self._errors = errors
        self._colour = colour and not json_format
        self._json = json_format
        self._owned = tuple(owned)
        self._paths: Dict[int, str] = dict(paths or {})
        #: Called (with the buffer's lock held) for each line dropped, for the metrics.
        self.on_drop: Optional[Callable[[], None]] = None
        self._capacity = buffer_bytes
        self._write_limits = {fd: _write_limit(fd) for fd in (access, errors)}
        self._immediate = os.isatty(access)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the writer waits here for lines
        self._entries: List[Tuple[int, bytes]] = []
        self._buffered = 0
        self._dropped = 0
        self._urgent = False
        self._closing = False
        self._writer = threading.Thread(target=self._write_forever, name="log-writer",
                                        daemon=True)
        self._writer.start()

    @classmethod
    def from_config(cls, config: Config) -> "Logger":
        """Open the destinations the settings name (``-``: stdout for access, stderr for errors).

        Raises ``OSError`` naming the file (``filename``) that cannot be opened; nothing
        stays open then."""
        owned: List[int] = []
        try:
            access = _open_destination(config.access_log, _STDOUT, owned)
            errors = _open_destination(config.error_log, _STDERR, owned)
        except OSError:
            for fd in owned:
                os.close(fd)
            raise
        if config.log_colour == "auto":
            colour = os.isatty(access)
        else:
            colour = config.log_colour == "always"
        paths = {fd: path for fd, path in ((access, config.access_log),
                                           (errors, config.error_log)) if fd in owned}
        return cls(access, errors, colour=colour, buffer_bytes=config.log_buffer, owned=owned,
                   paths=paths, json_format=config.log_format == "json")

    def access(self, client: str, request_line: str, status: int, size: int,
               referer: Optional[str], user_agent: Optional[str],
               user: Optional[str] = None, suffix: str = "", *, duration_us: int = 0,
               received: int = 0, upstream: Optional[str] = None,
               refusal: Optional[str] = None) -> None:
        """Log one access line for a response that was sent.

        ``size`` is the body bytes sent, ``received`` every byte taken from the client,
        ``duration_us`` the microseconds from the request's first byte to the end of the
        response.  ``user`` is the user who logged in (the third field; ``-`` for none),
        escaped like the other client text and with its blanks as ``\\x20``, so it stays one
        field.  ``suffix`` is text of Nex's own put after the duration (a CONNECT tunnel's
        `` up=N down=N``), never text from the client; ``refusal`` the token of the rule
        that refused the request, ``upstream`` the origin a proxied request went to.
        """
        if self._json:
            line = _json_line(client, request_line, status, size, referer, user_agent, user,
                              duration_us, received, upstream, refusal)
            self._append(self._access, line, urgent=self._immediate)
            return
        status_text: object = status
        if self._colour:
            status_text = f"\x1b[{_STATUS_COLOURS.get(status // 100, '0')}m{status}\x1b[0m"
        user_text = escape_log_text(user).replace(" ", "\\x20") if user else "-"
        line = (f'{client} - {user_text} [{clf_time_now()}] "{escape_log_text(request_line)}" '
                f'{status_text} {size if size else "-"} '
                f'"{escape_log_text(referer) if referer else "-"}" '
                f'"{escape_log_text(user_agent) if user_agent else "-"}" {duration_us}{suffix}'
                f'{" reason=" + refusal if refusal else ""}\n')
        self._append(self._access, line, urgent=self._immediate)

    def reopen(self) -> None:
        """Open the log files again under their names (after logrotate moved them).

        Each new file takes the old descriptor's number (``dup2``), so a line is written
        whole to the old file or to the new one, and none is lost.  This takes no lock and
        may run in a signal handler.  A file that cannot be opened leaves the old one in
        use, with a warning written to the error log.
        """
        for fd, path in self._paths.items():
            _reopen(fd, path, self._errors)

    def message(self, text: str) -> None:
        """Log an informational line (start-up, shutdown) to the access stream."""
        self._append(self._access, text + "\n", urgent=True)

    def warning(self, text: str) -> None:
        """Log a timestamped warning to the error log."""
        self._append(self._errors, error_line("warning", text), urgent=True)

    def exception(self, text: str) -> None:
        """Log ``text`` and the traceback of the exception being handled to the error log."""
        trace = traceback.format_exc()
        self._append(self._errors, error_line("error", text) + trace, urgent=True)

    def close(self) -> None:
        """Write out everything logged so far, stop the writer and close the owned logs."""
        with self._lock:
            self._closing = True
            self._work.notify()
        self._writer.join()
        owned, self._owned = self._owned, ()
        for fd in owned:
            os.close(fd)

    def _append(self, fd: int, text: str, *, urgent: bool) -> None:
        """Put ``text`` (whole lines) in the buffer for ``fd``, or count it as dropped."""
        data = text.encode("utf-8", "backslashreplace")
        with self._lock:
            buffered = self._buffered + len(data)
            if buffered > self._capacity:
                self._dropped += 1
                if self.on_drop is not None:
                    self.on_drop()
                return
            self._entries.append((fd, data))
            self._buffered = buffered
            if urgent:
                self._urgent = True
            if urgent or len(self._entries) == 1 or buffered >= _BATCH_BYTES:
                self._work.notify()

    def _write_forever(self) -> None:
        """The writer thread: take what is buffered, write it, until closed and empty."""
        while True:
            with self._lock:
                while not (self._entries or self._dropped or self._closing):
                    self._work.wait()
                if not (self._urgent or self._closing or self._buffered >= _BATCH_BYTES):
                    self._work.wait(FLUSH_INTERVAL)  # gather a batch; urgent lines cut it short
                batch, self._entries = self._entries, []
                dropped, self._dropped = self._dropped, 0
                self._buffered = 0
                self._urgent = False
                done = self._closing and not batch and not dropped
            if done:
                return
            self._write_batch(batch)
            if dropped:
                notice = error_line("warning", f"{dropped} log line"
                                    f"{'' if dropped == 1 else 's'} dropped: the log was not"
                                    " written as fast as lines came")
                self._write_batch([(self._errors, notice.encode("ascii"))])

    def _write_batch(self, batch: Sequence[Tuple[int, bytes]]) -> None:
        """Write ``batch`` in order, each run of entries for one destination in whole lines."""
        index = 0
        while index < len(batch):
            fd = batch[index][0]
            end = index
            while end < len(batch) and batch[end][0] == fd:
                end += 1
            for chunk in _whole_lines(batch[index:end], self._write_limits[fd]):
                _write_fully(fd, chunk)
            index = end


def _json_line(client: str, request_line: str, status: int, size: int, referer: Optional[str],
               user_agent: Optional[str], user: Optional[str], duration_us: int,
               received: int, upstream: Optional[str], refusal: Optional[str]) -> str:
    """One access line as a JSON object (ASCII, so control characters come escaped)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    record: Dict[str, object] = {"time": f"{stamp}.{int(now % 1 * 1000):03d}Z",
                                 "client": client, "user": user}
    parts = request_line.split(" ")
    if len(parts) == 3:
        record.update(method=parts[0], target=parts[1], protocol=parts[2])
    else:  # not a request line that parsed: the text as it came
        record.update(method=None, target=None, request=request_line)
    record.update(status=status, bytes_in=received, bytes_out=size, duration_us=duration_us,
                  referer=referer, user_agent=user_agent)
    if upstream is not None:
        record["upstream"] = upstream
    if refusal is not None:
        record["reason"] = refusal
    return json.dumps(record, separators=(",", ":")) + "\n"


def _whole_lines(entries: Sequence[Tuple[int, bytes]], limit: int) -> Iterator[bytes]:
    """The entries' bytes cut into pieces of whole lines, each at most ``limit`` bytes unless
    a single line is longer (that line is a piece of its own)."""
    pending: List[bytes] = []
    size = 0
    for _, data in entries:
        parts = [data] if len(data) <= limit else data.splitlines(keepends=True)
        for part in parts:
            if pending and size + len(part) > limit:
                yield b"".join(pending)
                pending, size = [], 0
            pending.append(part)
            size += len(part)
    if pending:
        yield b"".join(pending)


def _write_fully(fd: int, data: bytes) -> None:
    """``os.write`` all of ``data`` to ``fd``; a destination that fails loses the rest."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # a non-blocking descriptor (a terminal shared with others)
            select.select([], [fd], [])
            continue
        except OSError:  # closed pipe, full disk: nothing better to do with the lines
            return
        view = view[written:]


def _write_limit(fd: int) -> int:
    """The largest write to ``fd`` that keeps lines whole: ``PIPE_BUF`` for a pipe."""
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        is_pipe = False
    return select.PIPE_BUF if is_pipe else _FILE_WRITE_BYTES


def open_log_file(path: str, *, create: bool = True) -> int:
    """A descriptor appending to the log file ``path``, created unless ``create`` is false.

    The one way Nex opens a log file: each write on it is one ``write(2)`` at the end
    (``O_APPEND``), so processes sharing it never interleave within a line.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    return os.open(path, flags | os.O_CREAT if create else flags, 0o666)


def _open_destination(destination: str, default: int, owned: List[int]) -> int:
    """The descriptor to write a log to: ``default`` for ``-``, else the file, appended to."""
    if destination == "-":
        return default
    fd = open_log_file(destination)
    owned.append(fd)
    return fd


class SupervisorLog:
    """The supervisor's own lines in the error log: workers started and ended, reloads.

    Each line is one ``write(2)``, on an ``O_APPEND`` descriptor for a file, so it stays whole
    among the workers' lines.  The format is the error log's: ``[time] level: text``.
    """

    def __init__(self, destination: str) -> None:
        self.destination = destination
        if destination == "-":
            self.fd = sys.stderr.fileno()
        else:
            self.fd = open_log_file(destination)

    def info(self, text: str) -> None:
        """Write an informational line."""
        self._write("info", text)

    def warning(self, text: str) -> None:
        """Write a warning."""
        self._write("warning", text)

    def reopen(self) -> None:
        """Open the log file again under its name, in the same descriptor (see
        :meth:`Logger.reopen`)."""
        if self.destination != "-":
            _reopen(self.fd, self.destination, self.fd)

    def close(self) -> None:
        """Close the log file (never standard error)."""
        if self.destination != "-":
            os.close(self.fd)

    def _write(self, level: str, text: str) -> None:
        sys.stderr.flush()  # a "nex:" line printed before keeps its place
        try:
            os.write(self.fd, error_line(level, text).encode("utf-8", "backslashreplace"))
        except OSError:
            pass  # a full disk or a closed stream must not stop the supervisor


def _reopen(fd: int, path: str, errors: int) -> None:
    """Open ``path`` again as descriptor ``fd``; on failure keep the old file and say so on
    ``errors`` in one write."""
    try:
        new = open_log_file(path)
    except OSError as error:
        notice = error_line("warning", f"cannot reopen {path}, the old file stays in use: "
                                       f"{error.strerror}")
        _write_fully(errors, notice.encode("utf-8", "backslashreplace"))
        return
    try:
        os.dup2(new, fd, inheritable=False)
    finally:
        os.close(new)
