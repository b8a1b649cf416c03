"""Settings: ``settings.conf`` plus the command line, validated once into a frozen Config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Tuple


@dataclass(frozen=True)
class Config:
    """Every setting Nex runs with, validated; paths are absolute."""

    # [server]
    bind: str = "127.0.0.1"
    port: int = 8080
    server_name: str = "localhost"
    document_root: str = ""
    error_pages: str = ""
    templates: str = ""
    index_files: Tuple[str, ...] = ("index.html", "index.htm")
    allowed_hosts: Tuple[str, ...] = ("*",)
    max_connections: int = 1024
    max_connections_per_client: int = 128
    backlog: int = 128
    thread_stack_size: int = 512 * 1024
    # [timeouts], seconds
    request_head_timeout: float = 10.0
    keep_alive_timeout: float = 15.0
    shutdown_grace: float = 10.0
    # [limits], bytes or counts
    max_request_line: int = 8192
    max_header_block: int = 65536
    max_header_count: int = 100
    max_request_body: int = 1024 * 1024
    max_ranges: int = 16
    # [files]
    listing: bool = True
    dotfiles: bool = False
    symlinks: str = "inside"
    # [caching]
    cache_control: str = "no-cache"
    max_age: Mapping[str, int] = field(default_factory=dict)
    # [compression]
    precompressed: bool = True
    gzip: bool = False
    gzip_min_size: int = 1024
    # [logging]
    access_log: str = "-"
    error_log: str = "-"
    log_colour: str = "auto"
    # [mime]
    mime_types: Mapping[str, str] = field(default_factory=dict)
