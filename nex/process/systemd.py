"""systemd: readiness notices and socket activation, by hand with the standard library.

**Notices** (``sd_notify(3)``): when systemd starts Nex with ``Type=notify`` it names a Unix
datagram socket in ``$NOTIFY_SOCKET``; :func:`notify` sends one datagram of ``KEY=value``
lines to it.  Nex sends ``READY=1`` once it accepts, ``RELOADING=1`` with ``MONOTONIC_USEC``
when SIGHUP starts a reload and ``READY=1`` when it is done, ``STOPPING=1`` when it starts to
stop, and ``STATUS=`` lines saying what it does.  Without ``$NOTIFY_SOCKET`` nothing is sent.
Only the process systemd started (the lone server, or the supervisor) notifies; workers
never do.

**Socket activation** (``sd_listen_fds(3)``): with ``$LISTEN_PID`` equal to our pid,
``$LISTEN_FDS`` sockets start at descriptor :data:`LISTEN_FDS_START`.  Nex serves on the
first one instead of binding ``bind``/``port``; with workers, every worker accepts on it.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Optional

#: The first descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3


class ActivationError(Exception):
    """The sockets systemd passed cannot be served on; the message says why."""


def notify(*lines: str) -> bool:
    """Send ``lines`` (``READY=1``, ``STATUS=...``) to systemd; return whether it was sent.

    An abstract socket name (``@...``) is supported.  Failures are ignored, as
    ``sd_notify`` does: the service must run the same with or without a listener.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    message = "\n".join(lines).encode("utf-8", "backslashreplace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, target)
    except OSError:
        return False
    return True


def reloading_lines(status: str) -> tuple:
    """The notice that a reload starts (``Type=notify-reload`` wants the clock with it)."""
    return ("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
            f"STATUS={status}")


def activated_listener() -> Optional[socket.socket]:
    """The listening socket systemd passed to this process, or None when it passed none.

    The ``LISTEN_*`` variables are removed so that no child takes them for its own.  The
    first passed socket is served; it must be a listening TCP socket.  Raises
    :class:`ActivationError` otherwise.
    """
    pid_text = os.environ.get("LISTEN_PID", "")
    count_text = os.environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not (pid_text.isdigit() and pid_text.isascii() and int(pid_text) == os.getpid()):
        return None
    if not (count_text.isdigit() and count_text.isascii()) or int(count_text) < 1:
        raise ActivationError(f"LISTEN_FDS={count_text!r}: systemd passed no socket")
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count_text)):
        try:
            os.set_inheritable(fd, False)
        except OSError as error:
            raise ActivationError(f"LISTEN_FDS={count_text}: descriptor {fd} from systemd is "
                                  f"not open: {error.strerror}") from None
    try:
        listener = socket.socket(fileno=LISTEN_FDS_START)
    except OSError as error:
        raise ActivationError(f"descriptor {LISTEN_FDS_START} from systemd is not a socket: "
                              f"{error.strerror}") from None
    if (listener.type != socket.SOCK_STREAM
            or listener.family not in (socket.AF_INET, socket.AF_INET6)
            or not listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
        listener.detach()
        raise ActivationError(f"descriptor {LISTEN_FDS_START} from systemd is not a listening "
                              "TCP socket (use ListenStream= with an address and port)")
    listener.setblocking(True)
    return listener
