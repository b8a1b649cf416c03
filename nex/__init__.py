"""Nex: a multi-threaded HTTP/1.1 file server built on plain sockets."""

__version__ = "0.1.0"

#: The product token sent in the ``Server`` header and shown on generated pages.
SERVER_SOFTWARE = "Nex/0.1"
