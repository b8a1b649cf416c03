"""Nex: a multi-threaded HTTP/1.1 file server built on plain sockets."""

#: The one place the version is written; setup.py, --version and the Server header read it.
__version__ = "0.1.0"

#: The product token sent in the ``Server`` header and shown on generated pages.
SERVER_SOFTWARE = f"Nex/{__version__}"
