"""multipart/form-data bodies as browsers send them."""

from __future__ import annotations

#: The boundary :func:`form` uses unless told otherwise.
FORM_BOUNDARY = b"----NexBoundary7MA4YWxk"
#: The boundary of the upload tests' forms, and the Content-Type field that names it.
BOUNDARY = "nexTestBoundary"
FORM_TYPE = ("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
#: The Accept field of a browser navigating to a page.
HTML = ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")


def part(disposition: str, data: bytes, extra: str = "") -> bytes:
    """One part: its header lines and data, without delimiters."""
    return (f"Content-Disposition: {disposition}\r\n{extra}\r\n").encode("utf-8") + data


def form(*parts: bytes, boundary: bytes = FORM_BOUNDARY, preamble: bytes = b"",
         epilogue: bytes = b"\r\n") -> bytes:
    """A body of ``parts`` as browsers send it."""
    out = preamble
    for body in parts:
        out += b"--" + boundary + b"\r\n" + body + b"\r\n"
    return out + b"--" + boundary + b"--" + epilogue


def file_part(filename: str, data: bytes, name: str = "file") -> bytes:
    """One file part of a form, its file name quoted as RFC 9110 §5.6.4 says."""
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    return part(f'form-data; name="{name}"; filename="{quoted}"', data,
                "Content-Type: application/octet-stream\r\n")


def form_body(*parts: bytes) -> bytes:
    """A body of ``parts`` delimited by :data:`BOUNDARY`."""
    return form(*parts, boundary=BOUNDARY.encode())
