"""TLS: the server's context, built from a certificate and key, and replaced on reload.

:func:`create_context` makes an ``ssl.SSLContext`` for the server side: TLS 1.2 at least,
for TLS 1.2 only the forward-secret AEAD suites (:data:`TLS12_CIPHERS`; TLS 1.3 has no
others), no renegotiation, and ALPN ``http/1.1``.  :class:`ServerTLS` holds the context new
connections are wrapped with; :meth:`ServerTLS.reload` reads the files again, so a renewed
certificate takes effect without a restart, and a pair that does not load leaves the old one
in place.
:func:`make_self_signed` writes a throw-away certificate for ``localhost`` for local testing.

The handshake itself happens in the connection's worker thread
(``nex/process/connection.py``), never in the accept loop.  Every failure to load is a
:class:`TLSError` with a one-line message.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
from typing import Tuple

#: The oldest protocol version Nex accepts (RFC 8996 retires TLS 1.0 and 1.1).
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
#: The TLS 1.2 cipher suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305, as
#: Mozilla's "intermediate" profile without its DHE suites.  The CBC suites (AES256-SHA384,
#: AES128-SHA256...) that OpenSSL offers by default are open to timing attacks (LUCKY13).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
#: The application protocols offered in ALPN (RFC 7301): HTTP/1.1 only.
ALPN_PROTOCOLS = ("http/1.1",)
#: The names a self-signed certificate is made for.
SELF_SIGNED_NAMES = ("localhost", "127.0.0.1", "::1")
_SELF_SIGNED_DAYS = 30
_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----")
_OPENSSL_CONFIG = """\
[req]
distinguished_name = name
x509_extensions = leaf
prompt = no
[name]
CN = {name}
[leaf]
subjectAltName = DNS:{name}, {addresses}
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class TLSError(Exception):
    """A certificate or key cannot be used; the message says which file and why."""


class _Passphrase(Exception):
    """Raised by the password callback: Nex never prompts for a key's passphrase."""


def _refuse_passphrase() -> bytes:
    raise _Passphrase()


def create_context(certificate: str, key: str) -> ssl.SSLContext:
    """A server context serving ``certificate`` (PEM, the chain after the leaf) with ``key``.

    Raises :class:`TLSError` when a file cannot be read, holds no PEM certificate or key,
    the key needs a passphrase, or the key does not belong to the certificate (also when
    one is RSA and the other EC).
    """
    for role, path in (("certificate", certificate), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise TLSError(f"cannot read TLS {role} {path}: {error.strerror}") from None
    try:
        # Parsing the certificate alone first tells a bad certificate from a bad key.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=certificate)
    except ssl.SSLError:
        raise TLSError(f"TLS certificate {certificate} holds no PEM certificate") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_ciphers(TLS12_CIPHERS)
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    try:
        context.load_cert_chain(certificate, key, password=_refuse_passphrase)
    except _Passphrase:
        raise TLSError(f"TLS key {key} is encrypted; Nex needs a key without a passphrase"
                       ) from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise TLSError(f"TLS key {key} does not belong to certificate {certificate}"
                           ) from None
        if error.reason == "NO_CERTIFICATE_ASSIGNED":
            # OpenSSL read the key but found no certificate of its type to pair it with.
            raise TLSError(f"TLS key {key} is not of the type of the public key in "
                           f"certificate {certificate} (an RSA key with an EC certificate, "
                           "or the other way round): it does not belong to it") from None
        raise TLSError(f"TLS key {key} holds no PEM private key") from None
    except OSError as error:
        raise TLSError(f"cannot read TLS certificate {certificate} or key {key}: "
                       f"{error.strerror}") from None
    return context


def certificate_fingerprint(certificate: str) -> str:
    """The SHA-256 fingerprint of the first certificate in the PEM file ``certificate``,
    as colon-separated hex pairs (``openssl x509 -fingerprint -sha256`` shows the same).

    Raises :class:`TLSError` when the file cannot be read or holds no PEM certificate.
    """
    try:
        with open(certificate, encoding="ascii", errors="replace") as source:
            text = source.read()
    except OSError as error:
        raise TLSError(f"cannot read TLS certificate {certificate}: {error.strerror}"
                       ) from None
    match = _PEM_CERTIFICATE.search(text)
    if match is None:
        raise TLSError(f"TLS certificate {certificate} holds no PEM certificate")
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(match.group())).hexdigest().upper()
    return ":".join(digest[index:index + 2] for index in range(0, len(digest), 2))


class ServerTLS:
    """The context new connections are wrapped with, and the files it is loaded from.

    The paths are kept as given (symbolic links not resolved), so :meth:`reload` follows a
    link that renewal pointed at a new file.  A connection keeps the context it was wrapped
    with; the reference is swapped whole, so workers need no lock to read it.
    """

    def __init__(self, certificate: str, key: str) -> None:
        self.certificate = certificate
        self.key = key
        self._context = create_context(certificate, key)
        self.fingerprint = certificate_fingerprint(certificate)

    def wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        """``sock`` as the server end of a TLS connection whose handshake is still to come
        (``do_handshake()``): wrapping does no I/O, so it cannot block."""
        return self._context.wrap_socket(sock, server_side=True,
                                         do_handshake_on_connect=False)

    def reload(self) -> None:
        """Read the certificate and key again for the connections wrapped from now on.

        Raises :class:`TLSError` when the pair does not load; the previous one then stays.
        """
        context = create_context(self.certificate, self.key)
        fingerprint = certificate_fingerprint(self.certificate)
        self._context, self.fingerprint = context, fingerprint


def is_plain_http(first: bytes) -> bool:
    """Whether a connection's first byte starts a plain HTTP request instead of TLS.

    A request line starts with its method, in practice ASCII letters (RFC 9112 §3); a TLS
    client starts with a handshake record, byte 0x16 (RFC 8446 §5.1).
    """
    return first[:1].isalpha()


def send_close_notify(sock: ssl.SSLSocket) -> None:
    """Send TLS's closure alert without waiting for the client's (RFC 9112 §9.8 allows
    this "incomplete close"); never blocks.

    ``unwrap()`` on a non-blocking socket sends the alert, then looks for the client's and,
    not finding it, raises ``SSLWantReadError``: the expected outcome.  An alert that does
    not fit in the send buffer is dropped, since that client is not reading anyway.
    """
    sock.settimeout(0)
    try:
        sock.unwrap()
    except OSError:
        pass


def make_self_signed(folder: str) -> Tuple[str, str]:
    """Write a self-signed certificate for localhost, 127.0.0.1 and ::1 and its key into
    ``folder``, which should be private; return their paths ``(certificate, key)``.

    It uses the ``cryptography`` package when installed, else the ``openssl`` command; with
    neither it raises :class:`TLSError`.  The certificate is valid for 30 days and meant for
    local testing only.
    """
    certificate = os.path.join(folder, "certificate.pem")
    key = os.path.join(folder, "key.pem")
    if _self_signed_with_cryptography(certificate, key):
        return certificate, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSError("a self-signed certificate needs the Python package cryptography or"
                       " the openssl command, and neither is available")
    config = os.path.join(folder, "openssl.cnf")
    with open(config, "w", encoding="ascii") as out:
        out.write(_OPENSSL_CONFIG.format(
            name=SELF_SIGNED_NAMES[0],
            addresses=", ".join(f"IP:{address}" for address in SELF_SIGNED_NAMES[1:])))
    try:
        result = subprocess.run(
            [openssl, "req", "-x509", "-config", config, "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
             "-out", certificate, "-days", str(_SELF_SIGNED_DAYS)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    finally:
        os.remove(config)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise TLSError(f"openssl could not make a self-signed certificate: {lines[-1]}")
    os.chmod(key, 0o600)  # older openssl versions create it as the umask allows
    return certificate, key


def _self_signed_with_cryptography(certificate_path: str, key_path: str) -> bool:
    """Make the certificate and key with the ``cryptography`` package; False without it."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SELF_SIGNED_NAMES[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    alternative_names = [x509.DNSName(SELF_SIGNED_NAMES[0])] + [
        x509.IPAddress(ipaddress.ip_address(address)) for address in SELF_SIGNED_NAMES[1:]]
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=_SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key_pem)
    with open(certificate_path, "wb") as out:
        out.write(certificate.public_bytes(serialization.Encoding.PEM))
    return True
