"""Reading the metrics page: its samples, parsed with prometheus_client's own text parser."""

from __future__ import annotations

from typing import Dict, Tuple

from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import NexServer, exchange

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a metrics page, by name and labels, through prometheus_client."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def scrape(server: NexServer) -> Samples:
    """The samples of ``server``'s metrics page at the default path (failing unless 200)."""
    with server.connect() as sock:
        answer = exchange(sock, b"GET /.nex/metrics HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise AssertionError(f"the metrics page answered {head[:60]!r}")
    return parse(body.decode("utf-8"))
