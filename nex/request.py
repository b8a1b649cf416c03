"""The parser: bytes of a request head in, a :class:`Request` out, or an ``HTTPError``.

Nothing here touches a socket; the connection loop feeds it what it has read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple


class Headers:
    """Case-insensitive, order-keeping multimap of the request's field lines.

    Names keep the spelling the client sent; lookups ignore case.  ``get`` joins repeated
    fields with ``", "`` as RFC 9110 §5.3 allows for list-based fields.
    """

    __slots__ = ("_items", "_index")

    def __init__(self, items: List[Tuple[str, str]]) -> None:
        self._items = items
        self._index: Dict[str, List[str]] = {}
        for name, value in items:
            self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The field's value (repeats joined by ``", "``), or ``default`` when absent."""
        values = self._index.get(name.lower())
        if values is None:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def get_all(self, name: str) -> List[str]:
        """Every value sent for ``name``, in order; empty when absent."""
        return list(self._index.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> List[Tuple[str, str]]:
        """The field lines as sent: ``(name, value)`` pairs."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True)
class Request:
    """One parsed request head.

    ``target`` is the request-target as sent; ``path`` its path part, still
    percent-encoded (for absolute-form targets, the path of the URL); ``query`` the part
    after ``?`` without it.  ``host`` is the authority the request is for: the Host field,
    or the authority of an absolute-form target, which RFC 9112 §3.2.2 says wins.
    ``body_length`` is the Content-Length (0 when absent); ``chunked`` says the body is
    framed by the chunked transfer coding instead.
    """

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Headers
    host: str
    keep_alive: bool
    body_length: int = 0
    chunked: bool = False

    @property
    def request_line(self) -> str:
        """The request line as logged: ``METHOD target HTTP/x.y``."""
        return f"{self.method} {self.target} {self.version}"

    @property
    def has_body(self) -> bool:
        """Whether a message body follows the head."""
        return self.chunked or self.body_length > 0
