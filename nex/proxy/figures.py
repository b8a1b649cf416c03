"""The proxy's figures for the metrics: the outcome tokens of its answers, and its tally.

Every answer to a request for the proxy has one *outcome*, a token from :data:`OUTCOMES`:
``forwarded`` (the origin answered, whatever its status), ``tunnel`` (a CONNECT relayed) or
``websocket`` (an upgrade relayed after the origin's ``101``); the token of the admission
rule that refused it (:data:`REFUSALS`, the ``refusal`` of its ``HTTPError``); the kind of
upstream failure that made it a ``502`` or ``504`` (:data:`FAILURES`, the ``failure`` of its
``HTTPError``); or ``other`` for any other answer of Nex's own (a malformed request, an
``https://`` target, OPTIONS or TRACE answered by the proxy itself).  A token outside these
sets counts as ``other``, so the set of outcomes never grows.

The *tally* is a sequence of :data:`TALLY_SIZE` integers that the DNS cache and the origin
pool of one process count into, each under the lock it already holds for its own work
(indexes below).  The metrics give each serving process a tally in its row of their shared
table; without metrics it is a plain list nobody reads.
"""

from __future__ import annotations

from typing import List, MutableSequence

#: The admission checks' refusal tokens (nex.proxy.admission; ``auth`` from nex.site.login).
REFUSALS = ("client", "loop", "auth", "port", "blacklist", "denied_destination", "not_allowed")
#: Why an upstream step failed: the DNS look-up (no address, too slow), the connection
#: (refused, unreachable, too slow), the exchange (the origin too slow, the connection
#: reset or closed before a whole response head, a malformed response), a parent proxy that
#: refused Nex.
FAILURES = ("dns_failed", "dns_timeout", "refused", "unreachable", "connect_timeout",
            "timeout", "reset", "bad_response", "parent_refused")
OUTCOMES = ("forwarded", "tunnel", "websocket") + REFUSALS + FAILURES + ("other",)

#: Answers the DNS cache gave (a remembered failure too).
DNS_HITS = 0
#: Look-ups made (cache misses, or every look-up with the cache off), counted as they end.
DNS_LOOKUPS = 1
#: Look-ups that found no address.
DNS_FAILURES = 2
#: Names the cache holds now (a gauge).
DNS_ENTRIES = 3
#: Connections to origins the pool opened: none was idle, or the one taken had been closed
#: by the origin meanwhile.
ORIGINS_OPENED = 4
#: Idle connections the pool took out again for a request.
ORIGINS_REUSED = 5
TALLY_SIZE = 6
#: The tally's gauges: a process that ends takes them with it.
TALLY_GAUGES = (DNS_ENTRIES,)

Tally = MutableSequence[int]


def new_tally() -> List[int]:
    """A tally of one's own, for a proxy whose figures nobody shows."""
    return [0] * TALLY_SIZE
