"""Passwords and Basic credentials (RFC 7617): the users file's lines and their hashes.

A hash is ``scrypt$<n>$<r>$<p>$<salt>$<key>``: scrypt's cost parameters, a random salt and
the derived key, both in standard base64, as :func:`hash_password` (and ``nex
--hash-password USER``) writes it.  User names are what RFC 7617 allows in a user-id (no
``:``, no control characters), without blanks at either end and not starting with ``#``.
Names and passwords compare in Unicode Normalization Form C, as the ``charset="UTF-8"``
challenge asks clients to send them.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import os
import re
import unicodedata
from typing import Dict, Iterable, NamedTuple, Optional, Tuple

from nex.http.grammar import CREDENTIALS


#: scrypt cost written by :func:`hash_password`: 16 MiB of memory, about 50 ms per check.
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2 ** 14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
# Bounds on parameters read from a file, so that a typo cannot make each check take
# gigabytes or minutes: n a power of two, 128 * n * r bytes of memory at most 128 MiB.
_MIN_N, _MAX_N = 2 ** 10, 2 ** 20
_MAX_R, _MAX_P = 32, 16
_MAX_MEMORY = 128 * 1024 * 1024
_MAX_USER_NAME = 256

_B64 = r"[A-Za-z0-9+/]+={0,2}"
_HASH = re.compile(rf"scrypt\$([0-9]{{1,7}})\$([0-9]{{1,2}})\$([0-9]{{1,2}})\$({_B64})\$({_B64})")
# RFC 7617 §2: neither user-id nor password may hold control characters (C0, DEL; C1 too).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _strict_b64decode(text: str) -> bytes:
    """Standard base64 with padding, in its one canonical spelling; ``ValueError`` else."""
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return data


def check_user_name(name: str) -> str:
    """``name`` in Normalization Form C if it can be a user name, else ``ValueError`` why."""
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise ValueError("a user name cannot be empty")
    if ":" in name:
        raise ValueError("a user name cannot hold ':'")
    if _CONTROL.search(name):
        raise ValueError("a user name cannot hold control characters")
    if name != name.strip():
        raise ValueError("a user name cannot start or end with a blank")
    if name.startswith("#"):
        raise ValueError("a user name cannot start with '#'")
    if len(name) > _MAX_USER_NAME:
        raise ValueError(f"a user name has at most {_MAX_USER_NAME} characters")
    return name


def check_password(password: str) -> str:
    """``password`` in Normalization Form C if it can be sent as Basic credentials."""
    if _CONTROL.search(password):
        raise ValueError("a password cannot hold control characters")
    return unicodedata.normalize("NFC", password)


class PasswordHash(NamedTuple):
    """One stored password: scrypt's parameters, the salt and the derived key."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def verify(self, password: str) -> bool:
        """Whether ``password`` (already in NFC) derives this key; constant-time comparison."""
        derived = hashlib.scrypt(password.encode("utf-8"), salt=self.salt, n=self.n, r=self.r,
                                 p=self.p, maxmem=_maxmem(self.n, self.r, self.p),
                                 dklen=len(self.key))
        return hmac.compare_digest(derived, self.key)

    def __str__(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        key = base64.b64encode(self.key).decode("ascii")
        return f"scrypt${self.n}${self.r}${self.p}${salt}${key}"


def _maxmem(n: int, r: int, p: int) -> int:
    """The memory OpenSSL's scrypt needs for these parameters, with room to spare."""
    return 128 * r * (n + p + 2) + 1024 * 1024


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R,
                  p: int = DEFAULT_P) -> str:
    """The stored form of ``password``: ``scrypt$n$r$p$salt$key`` with a fresh 16-byte salt.

    The password is taken in Normalization Form C; ``ValueError`` if it holds control
    characters or the parameters are out of the bounds a users file accepts.
    """
    _check_parameters(n, r, p)
    password = check_password(password)
    salt = os.urandom(_SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                         maxmem=_maxmem(n, r, p), dklen=_KEY_BYTES)
    return str(PasswordHash(n, r, p, salt, key))


def _check_parameters(n: int, r: int, p: int) -> None:
    if not (_MIN_N <= n <= _MAX_N and n & (n - 1) == 0):
        raise ValueError(f"scrypt n must be a power of two from {_MIN_N} to {_MAX_N}")
    if not (1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        raise ValueError(f"scrypt r must be from 1 to {_MAX_R} and p from 1 to {_MAX_P}")
    if 128 * n * r > _MAX_MEMORY:
        raise ValueError("scrypt n and r would need more than 128 MiB (128 * n * r bytes)")


def parse_hash(text: str) -> PasswordHash:
    """The :class:`PasswordHash` spelled ``text``; ``ValueError`` saying what is wrong."""
    match = _HASH.fullmatch(text)
    if match is None:
        raise ValueError("the hash is not scrypt$<n>$<r>$<p>$<salt>$<key>"
                         " (use nex --hash-password USER)")
    n, r, p = (int(match.group(index)) for index in (1, 2, 3))
    _check_parameters(n, r, p)
    try:
        salt = _strict_b64decode(match.group(4))
        key = _strict_b64decode(match.group(5))
    except ValueError as error:
        raise ValueError(f"the salt or key is {error}") from None
    if len(salt) < 8 or not 16 <= len(key) <= 64:
        raise ValueError("the salt needs at least 8 bytes and the key 16 to 64")
    return PasswordHash(n, r, p, salt, key)


def parse_users(data: bytes) -> Dict[str, PasswordHash]:
    """The users of a users file's bytes, by name (NFC); ``ValueError("line N: ...")``."""
    users: Dict[str, PasswordHash] = {}
    lines: Dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip(" \t\r")
        except UnicodeDecodeError:
            raise ValueError(f"line {number}: not UTF-8 text") from None
        if not line.strip(" \t") or line.lstrip(" \t").startswith("#"):
            continue
        name, colon, stored = line.partition(":")
        try:
            if not colon:
                raise ValueError("expected user:hash")
            name = check_user_name(name)
            if name in users:
                raise ValueError(f"user {name!r} is already on line {lines[name]}")
            users[name] = parse_hash(stored)
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from None
        lines[name] = number
    return users


def basic_credentials(value: Optional[str]) -> Optional[Tuple[str, str]]:
    """``(user, password)`` from an ``Authorization``/``Proxy-Authorization`` value, else None.

    The value must be ``Basic`` (any letter case), spaces, and the canonical standard base64
    of UTF-8 ``user:password`` (RFC 7617 §2); neither part may hold control characters.
    Both come back in Normalization Form C.  Anything else, another scheme included, is None.
    """
    if value is None:
        return None
    match = CREDENTIALS.fullmatch(value)
    if match is None or match.group(1).lower() != "basic":
        return None
    try:
        text = _strict_b64decode(match.group(2)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, colon, password = text.partition(":")
    if not colon or _CONTROL.search(text):
        return None
    return unicodedata.normalize("NFC", user), unicodedata.normalize("NFC", password)


def challenge(realm: str) -> str:
    """The ``WWW-Authenticate``/``Proxy-Authenticate`` value asking for Basic credentials.

    ``realm`` is sent as a quoted-string (RFC 9110 §5.6.4); ``ValueError`` if it holds
    control characters or non-ASCII text, which no header may carry safely.
    """
    if not re.fullmatch(r"[\x20-\x7e]*", realm):
        raise ValueError("a realm is printable ASCII")
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}", charset="UTF-8"'


def decoy_hash(stored: Iterable[PasswordHash] = ()) -> PasswordHash:
    """A hash of no password, checked for an unknown user name so that it takes as long as
    a known one's: at the cost most of the ``stored`` hashes have (the default cost when
    there are none)."""
    costs = collections.Counter((hashed.n, hashed.r, hashed.p, len(hashed.key))
                                for hashed in stored)
    n, r, p, key_bytes = (costs.most_common(1)[0][0] if costs
                          else (DEFAULT_N, DEFAULT_R, DEFAULT_P, _KEY_BYTES))
    return PasswordHash(n, r, p, os.urandom(_SALT_BYTES), os.urandom(key_bytes))
