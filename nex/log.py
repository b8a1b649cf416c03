"""The logger: one Combined Log Format line per response, warnings and tracebacks apart.

Every write happens under one lock, so lines from concurrent workers never interleave.
Access lines are gathered in memory and written in batches, at least every
:data:`FLUSH_INTERVAL` seconds, so that workers never wait on each other's disk writes; on a
terminal each line is written at once.  Warnings and tracebacks are always written at once.
Text that comes from the client is escaped (control bytes as ``\\xHH``) so a request cannot
forge log lines or send escape sequences to a terminal.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import traceback
from typing import List, Optional, TextIO

from nex.clock import clf_time_now, format_clf_time
from nex.config import Config

_UNSAFE_LOG_TEXT = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')
_STATUS_COLOURS = {2: "32", 3: "36", 4: "33", 5: "31"}
#: The longest an access line waits in memory before it is written.
FLUSH_INTERVAL = 0.5
_BATCH_LINES = 512


def escape_log_text(text: str) -> str:
    """``text`` with quotes and backslashes escaped and control characters as ``\\xHH``."""
    if _UNSAFE_LOG_TEXT.search(text) is None:
        return text
    return _UNSAFE_LOG_TEXT.sub(_escape_char, text)


def _escape_char(match: "re.Match[str]") -> str:
    char = match.group()
    if char in '"\\':
        return "\\" + char
    return f"\\x{ord(char):02x}"


class Logger:
    """Access and error log writers sharing one lock."""

    def __init__(self, access: TextIO, errors: TextIO, *, colour: bool = False) -> None:
        self._access = access
        self._errors = errors
        self._colour = colour
        self._lock = threading.Lock()
        self._owned = [stream for stream in (access, errors)
                       if stream not in (sys.stdout, sys.stderr)]
        self._pending: List[str] = []
        self._immediate = _is_terminal(access)
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name="log-flusher",
                                         daemon=True)
        self._flusher.start()

    @classmethod
    def from_config(cls, config: Config) -> "Logger":
        """Open the destinations the settings name (``-``: stdout for access, stderr for errors)."""
        access = _open_stream(config.access_log, sys.stdout)
        errors = _open_stream(config.error_log, sys.stderr)
        if config.log_colour == "auto":
            colour = _is_terminal(access)
        else:
            colour = config.log_colour == "always"
        return cls(access, errors, colour=colour)

    def access(self, client: str, request_line: str, status: int, size: int,
               referer: Optional[str], user_agent: Optional[str],
               user: Optional[str] = None) -> None:
        """Write one Combined Log Format line for a response that was sent.

        ``user`` is the user who logged in (the third field; ``-`` for none), escaped like
        the other client text and with its blanks as ``\\x20``, so it stays one field.
        """
        status_text = str(status)
        if self._colour:
            status_text = f"\x1b[{_STATUS_COLOURS.get(status // 100, '0')}m{status}\x1b[0m"
        user_text = escape_log_text(user).replace(" ", "\\x20") if user else "-"
        line = (f'{client} - {user_text} [{clf_time_now()}] "{escape_log_text(request_line)}" '
                f'{status_text} {size if size else "-"} '
                f'"{escape_log_text(referer) if referer else "-"}" '
                f'"{escape_log_text(user_agent) if user_agent else "-"}"\n')
        if self._immediate:
            self._write(self._access, line)
            return
        with self._lock:
            self._pending.append(line)
            if len(self._pending) >= _BATCH_LINES:
                self._flush_pending()

    def message(self, text: str) -> None:
        """Write an informational line (start-up, shutdown) to the access stream."""
        self._write(self._access, text + "\n")

    def warning(self, text: str) -> None:
        """Write a timestamped warning to the error log."""
        self._write(self._errors, f"[{format_clf_time(time.time())}] warning: {text}\n")

    def exception(self, text: str) -> None:
        """Write ``text`` and the traceback of the exception being handled to the error log."""
        trace = traceback.format_exc()
        self._write(self._errors, f"[{format_clf_time(time.time())}] error: {text}\n{trace}")

    def flush(self) -> None:
        """Write out every access line gathered so far."""
        with self._lock:
            self._flush_pending()

    def close(self) -> None:
        """Write out what is pending and close the log files this logger opened."""
        self._closed.set()
        self._flusher.join()
        with self._lock:
            self._flush_pending()
            for stream in self._owned:
                stream.close()

    def _flush_periodically(self) -> None:
        while not self._closed.wait(FLUSH_INTERVAL):
            self.flush()

    def _flush_pending(self) -> None:
        if self._pending:
            self._access.write("".join(self._pending))
            self._pending.clear()
            self._access.flush()

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            self._flush_pending()
            stream.write(text)
            stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False


def _open_stream(destination: str, default: TextIO) -> TextIO:
    if destination == "-":
        return default
    return open(destination, "a", encoding="utf-8", errors="backslashreplace")
