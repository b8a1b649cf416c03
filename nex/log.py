"""The logger: one Combined Log Format line per response, warnings and tracebacks apart.

Every write happens under one lock, so lines from concurrent workers never interleave.
Text that comes from the client is escaped (control bytes as ``\\xHH``) so a request cannot
forge log lines or send escape sequences to a terminal.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import traceback
from typing import Optional, TextIO

from nex.config import Config

_UNSAFE_LOG_TEXT = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')
_STATUS_COLOURS = {2: "32", 3: "36", 4: "33", 5: "31"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def escape_log_text(text: str) -> str:
    """``text`` with quotes and backslashes escaped and control characters as ``\\xHH``."""
    return _UNSAFE_LOG_TEXT.sub(_escape_char, text)


def _escape_char(match: "re.Match[str]") -> str:
    char = match.group()
    if char in '"\\':
        return "\\" + char
    return f"\\x{ord(char):02x}"


def _clf_time(seconds: float) -> str:
    tm = time.gmtime(seconds)
    return (f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000")


class Logger:
    """Access and error log writers sharing one lock."""

    def __init__(self, access: TextIO, errors: TextIO, *, colour: bool = False) -> None:
        self._access = access
        self._errors = errors
        self._colour = colour
        self._lock = threading.Lock()
        self._owned = [stream for stream in (access, errors)
                       if stream not in (sys.stdout, sys.stderr)]

    @classmethod
    def from_config(cls, config: Config) -> "Logger":
        """Open the destinations the settings name (``-``: stdout for access, stderr for errors)."""
        access = _open_stream(config.access_log, sys.stdout)
        errors = _open_stream(config.error_log, sys.stderr)
        if config.log_colour == "auto":
            colour = access.isatty()
        else:
            colour = config.log_colour == "always"
        return cls(access, errors, colour=colour)

    def access(self, client: str, request_line: str, status: int, size: int,
               referer: Optional[str], user_agent: Optional[str]) -> None:
        """Write one Combined Log Format line for a response that was sent."""
        status_text = str(status)
        if self._colour:
            status_text = f"\x1b[{_STATUS_COLOURS.get(status // 100, '0')}m{status}\x1b[0m"
        line = (f'{client} - - [{_clf_time(time.time())}] "{escape_log_text(request_line)}" '
                f'{status_text} {size if size else "-"} '
                f'"{escape_log_text(referer) if referer else "-"}" '
                f'"{escape_log_text(user_agent) if user_agent else "-"}"\n')
        self._write(self._access, line)

    def message(self, text: str) -> None:
        """Write an informational line (start-up, shutdown) to the access stream."""
        self._write(self._access, text + "\n")

    def warning(self, text: str) -> None:
        """Write a timestamped warning to the error log."""
        self._write(self._errors, f"[{_clf_time(time.time())}] warning: {text}\n")

    def exception(self, text: str) -> None:
        """Write ``text`` and the traceback of the exception being handled to the error log."""
        trace = traceback.format_exc()
        self._write(self._errors, f"[{_clf_time(time.time())}] error: {text}\n{trace}")

    def close(self) -> None:
        """Close the log files this logger opened."""
        with self._lock:
            for stream in self._owned:
                stream.close()

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            stream.write(text)
            stream.flush()


def _open_stream(destination: str, default: TextIO) -> TextIO:
    if destination == "-":
        return default
    return open(destination, "a", encoding="utf-8", errors="backslashreplace")
