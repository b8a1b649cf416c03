"""The access policy's test site: a served root with a protected folder, links in and out of
it, and the credentials that open it."""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil
import tempfile
import unittest
import zipfile
from typing import Dict, List, Optional, Tuple

from nex.site.passwords import hash_password
from tests.support.server import NexServer, http_request, merge_settings

SECRET = b"the secret\n"
FAST = {"n": 1024, "r": 1, "p": 1}


def basic(user_password: str) -> str:
    """An Authorization value with Basic credentials (RFC 7617)."""
    return "Basic " + base64.b64encode(user_password.encode("utf-8")).decode("ascii")


RIGHT = {"Authorization": basic("alice:wonderland")}
WRONG = {"Authorization": basic("alice:guess")}
ANONYMOUS: Dict[str, str] = {}


def write(root: str, name: str, data: bytes) -> str:
    """Write ``data`` to ``root/name``, making its folders; the path."""
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(data)
    return path


def make_chain(top: str, levels: int) -> str:
    """``levels`` folders named ``d``, each inside the last, in ``top``; the deepest's path.

    Made one at a time: ``os.makedirs`` recurses, so before Python 3.12 it cannot make a
    tree nested deeper than the recursion limit."""
    folder = top
    for _ in range(levels):
        folder = os.path.join(folder, "d")
        os.mkdir(folder)
    return folder


def remove_chain(top: str, deepest: str) -> None:
    """Remove the folders from ``deepest`` up to, not including, ``top``, and the files in
    them, one level at a time (``shutil.rmtree`` recurses, as ``os.makedirs`` does)."""
    folder = deepest
    while folder != top:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
        folder = os.path.dirname(folder)


def write_users(path: str, users: Dict[str, str]) -> None:
    """Write a users file for ``{user: password}``, quickly hashed, replacing any old one at
    once."""
    with open(path + ".new", "w", encoding="utf-8") as out:
        out.write("# users\n")
        for user, password in users.items():
            out.write(f"{user}:{hash_password(password, **FAST)}\n")
    os.replace(path + ".new", path)


def make_users(folder: str) -> str:
    """A users file in ``folder`` with alice's password, quickly hashed; its path."""
    path = os.path.join(folder, "users")
    write_users(path, {"alice": "wonderland"})
    return path


class ServerTestCase(unittest.TestCase):
    """A server over a root with a protected folder and links in and out of the root."""

    settings: Dict[str, Dict[str, object]] = {}

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp(prefix="nex-access-root-")
        cls.outside = tempfile.mkdtemp(prefix="nex-access-outside-")
        cls.private_folder = tempfile.mkdtemp(prefix="nex-access-users-")
        write(cls.root, "private/secret.txt", SECRET)
        write(cls.root, "private/secret.txt.gz", gzip.compress(SECRET))
        write(cls.root, "private/site/index.html", SECRET)
        write(cls.root, "public/plain.txt", b"plain\n")
        write(cls.root, "public/doc.txt", b"doc\n")
        write(cls.root, "public/doc.txt.gz", gzip.compress(b"doc with a secret sidecar\n"))
        write(cls.root, "public/site/index.html", SECRET)
        write(cls.outside, "x.txt", b"outside\n")
        os.symlink("../private", os.path.join(cls.root, "public", "link"))
        os.symlink(cls.outside, os.path.join(cls.root, "public", "out"))
        settings = merge_settings({
            "auth": {"users_file": make_users(cls.private_folder),
                     "protect": "/private/, /public/doc.txt.gz, /public/site/index.html",
                     "max_failures_per_minute": 0},
            "files": {"upload": "yes", "zip_download": "yes"},
        }, cls.settings)
        cls.server = NexServer(cls.root, settings).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        for folder in (cls.root, cls.outside, cls.private_folder):
            shutil.rmtree(folder, ignore_errors=True)

    def request(self, method: str, target: str, headers: Dict[str, str],
                body: Optional[bytes] = None) -> Tuple[int, Dict[str, str], bytes]:
        sent = {"Host": f"127.0.0.1:{self.server.port}", **headers}
        return http_request(self.server, method, target, body, sent)


def zip_names(body: bytes) -> List[str]:
    """The names inside the zip archive ``body``."""
    return zipfile.ZipFile(io.BytesIO(body)).namelist()
