"""Cross-origin resource sharing: which web pages on other origins may read what Nex serves.

A browser lets a script read a response from another origin only when the response names the
script's origin (or ``*``) in ``Access-Control-Allow-Origin``; before a request that is not
"simple" (another method, headers such as ``If-None-Match``) it first asks with a
*preflight*: ``OPTIONS`` carrying ``Origin`` and ``Access-Control-Request-Method``.  The
rules here are the Fetch standard's (https://fetch.spec.whatwg.org/#http-cors-protocol):

* ``allow_origins = *`` — every response carries ``Access-Control-Allow-Origin: *``;
* a list of origins — a request whose ``Origin`` is on the list gets that origin echoed;
  every response carries ``Vary: Origin`` (RFC 9110 §12.5.5), because the answer depends on
  the field, so a shared cache never hands one origin's answer to another;
* a preflight from an allowed origin is answered ``204`` with the methods Nex serves, the
  request headers it asked for (each a valid token, else the preflight is not answered as
  one) and how long the browser may cache the answer;
* ``Access-Control-Expose-Headers`` lets scripts read the fields ranged reads need.

Nex sends no ``Access-Control-Allow-Credentials``: scripts may not read responses to
requests made with cookies or HTTP authentication, and ``*`` never combines with it.
"""

from __future__ import annotations

from typing import FrozenSet, List, Optional, Sequence, Tuple

from nex.http.grammar import TOKEN, parse_list
from nex.http.origin import normalise_origin
from nex.http.request import Request

HeaderList = List[Tuple[str, str]]

#: How long a browser may reuse a preflight's answer, in seconds; Chromium caps it here.
PREFLIGHT_MAX_AGE = 7200
#: Response fields a cross-origin script may read beyond the CORS-safelisted ones.
EXPOSED_HEADERS = "Content-Range, Accept-Ranges, ETag, Content-Length, Last-Modified"

class CorsPolicy:
    """The CORS answer for one served site: ``*`` or a list of origins (see the module).

    ``allow_origins`` holds ``"*"`` alone or origins as :func:`normalise_origin` writes
    them; ``methods`` are the methods the site serves, named to a preflight.
    """

    def __init__(self, allow_origins: Sequence[str], methods: Sequence[str]) -> None:
        if not allow_origins:
            raise ValueError("a CORS policy needs * or at least one origin")
        self.any_origin = "*" in allow_origins
        if self.any_origin and len(allow_origins) > 1:
            raise ValueError("* allows every origin; list origins without it")
        self.origins: FrozenSet[str] = frozenset(
            () if self.any_origin else (normalise_origin(origin) for origin in allow_origins))
        self._methods = ", ".join(methods)

    def allowed_origin(self, origin: Optional[str]) -> Optional[str]:
        """The ``Access-Control-Allow-Origin`` value for a request with ``Origin: origin``.

        ``*`` for a policy of ``*`` (whatever the request sent, so every response is the
        same); else the origin itself when it is on the list, else None.  Matching is exact,
        as the Fetch standard asks: browsers send origins in the form listed.
        """
        if self.any_origin:
            return "*"
        if origin is not None and origin in self.origins:
            return origin
        return None

    def preflight(self, request: Request) -> Optional[HeaderList]:
        """The fields of the ``204`` answering ``request`` as a preflight, or None.

        ``request`` is a preflight when it is ``OPTIONS`` for a path (not ``*``), from an
        allowed origin, with an ``Access-Control-Request-Method`` that is a token and an
        ``Access-Control-Request-Headers`` (when sent) that is a list of tokens.  Anything
        else is None: the request is an ordinary ``OPTIONS``, and a browser that sent it
        refuses the cross-origin request.  The requested headers are echoed in lower case.
        """
        headers = request.headers
        method = headers.get("Access-Control-Request-Method")
        origin = headers.get("Origin")
        if (request.method != "OPTIONS" or request.target == "*" or origin is None
                or method is None or not TOKEN.fullmatch(method)):
            return None
        allowed = self.allowed_origin(origin)
        if allowed is None:
            return None
        requested = headers.get("Access-Control-Request-Headers")
        names: List[str] = []
        if requested is not None:
            elements = parse_list(requested, TOKEN)
            if elements is None:
                return None
            names = list(dict.fromkeys(match.group(0).lower() for match in elements))
        fields = [("Access-Control-Allow-Origin", allowed)]
        if not self.any_origin:
            fields.append(("Vary", "Origin"))
        fields.append(("Access-Control-Allow-Methods", self._methods))
        if names:
            fields.append(("Access-Control-Allow-Headers", ", ".join(names)))
        fields.append(("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE)))
        return fields

    def add_headers(self, request: Request, headers: Sequence[Tuple[str, str]]) -> HeaderList:
        """``headers`` of a response to ``request`` with this policy's fields added.

        An allowed origin gets ``Access-Control-Allow-Origin`` and
        ``Access-Control-Expose-Headers``; a list policy adds ``Origin`` to ``Vary`` on
        every response, joining a ``Vary`` already there rather than sending a second one.
        """
        fields = list(headers)
        allowed = self.allowed_origin(request.headers.get("Origin"))
        if allowed is not None:
            fields.append(("Access-Control-Allow-Origin", allowed))
            fields.append(("Access-Control-Expose-Headers", EXPOSED_HEADERS))
        if not self.any_origin:
            _add_vary(fields, "Origin")
        return fields


def _add_vary(fields: HeaderList, name: str) -> None:
    """Add the field ``name`` to the ``Vary`` of ``fields``, in place, once."""
    for index, (field, value) in enumerate(fields):
        if field.lower() == "vary":
            listed = {match.group(0).lower() for match in parse_list(value, TOKEN) or ()}
            if name.lower() not in listed and "*" not in listed:
                fields[index] = (field, f"{value}, {name}")
            return
    fields.append(("Vary", name))
