"""HTTPS: the TLS context, reload, self-signed certificates, the writer's TLS path, settings,
and the real server over TLS (files, ranges, keep-alive, time-outs, caps, SIGHUP).

Certificates are made with the openssl command (tests/support); without it these tests
are skipped, since no certificate can be made with the standard library alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import unittest
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple
from unittest import mock

from nex.process.config import Config, load_config
from nex.process.connection import Connection, State
from nex.http.response import RECORD_SIZE, FileSlice, Response, write_response
from nex.process.tls import (ALPN_PROTOCOLS, MINIMUM_VERSION, ServerTLS, TLSError,
                     certificate_fingerprint, create_context, is_plain_http, make_self_signed,
                     send_close_notify)
from tests.support import (OPENSSL, REPO, SOCKET_TIMEOUT, NexServer, ResponseReader,
                           capture_log, client_context, make_certificate, read_all,
                           requires_openssl, socketpair_dispatcher, wait_until)
from tests.support.settings import refusal, run as run_cli
from tests.support import tls_pair

MIB = 1024 * 1024
BIG_SIZE = 20 * MIB
HELLO = b"hello, world\n"


def der(certificate: str) -> bytes:
    """The DER bytes of the single certificate in the PEM file ``certificate``."""
    return ssl.PEM_cert_to_DER_cert(Path(certificate).read_text(encoding="ascii"))




def served_certificate(tls: ServerTLS, trusted: str) -> bytes:
    """The DER certificate a new connection wrapped by ``tls`` presents (trusting
    ``trusted``)."""
    server, client = tls_pair(tls, ssl.create_default_context(cafile=trusted))
    with server, client:
        return client.getpeercert(binary_form=True)


@requires_openssl
class CertificateFolder(unittest.TestCase):
    """A private folder with two unrelated certificates, ``a`` and ``b``, and their keys."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.folder = tempfile.mkdtemp(prefix="nex-tls-")
        cls.cert_a, cls.key_a = make_certificate(cls.folder, "a")
        cls.cert_b, cls.key_b = make_certificate(cls.folder, "b")
        cls.garbage = os.path.join(cls.folder, "garbage.pem")
        Path(cls.garbage).write_text("not PEM at all\n")

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.folder, ignore_errors=True)


class CreateContextTest(CertificateFolder):
    """The server context: settings, handshakes, and one-line refusals."""

    def test_context_is_server_side_with_tls12_minimum_no_renegotiation_and_alpn(self) -> None:
        context = create_context(self.cert_a, self.key_a)
        self.assertEqual(context.protocol, ssl.PROTOCOL_TLS_SERVER)
        self.assertEqual(context.minimum_version, ssl.TLSVersion.TLSv1_2)
        self.assertEqual(MINIMUM_VERSION, ssl.TLSVersion.TLSv1_2)
        self.assertTrue(context.options & ssl.OP_NO_RENEGOTIATION)
        self.assertEqual(ALPN_PROTOCOLS, ("http/1.1",))

    def test_handshake_picks_http11_over_h2(self) -> None:
        tls = ServerTLS(self.cert_a, self.key_a)
        server, client = tls_pair(tls, client_context(self.cert_a))
        with server, client:
            self.assertEqual(client.selected_alpn_protocol(), "http/1.1")
            self.assertEqual(server.selected_alpn_protocol(), "http/1.1")
            self.assertIn(client.version(), ("TLSv1.2", "TLSv1.3"))
            self.assertEqual(client.getpeercert(binary_form=True), der(self.cert_a))

    def test_every_unusable_pair_is_refused_with_one_line_naming_the_file(self) -> None:
        absent = os.path.join(self.folder, "absent.pem")
        encrypted_key = os.path.join(self.folder, "encrypted.key")
        subprocess.run([OPENSSL, "pkey", "-in", self.key_a, "-aes256", "-passout",
                        "pass:secret", "-out", encrypted_key], check=True,
                       capture_output=True, stdin=subprocess.DEVNULL)
        cases = [
            (absent, self.key_a,
             f"cannot read TLS certificate {absent}: No such file or directory"),
            (self.cert_a, absent, f"cannot read TLS key {absent}: No such file or directory"),
            (self.garbage, self.key_a, f"TLS certificate {self.garbage} holds no PEM certificate"),
            (self.key_a, self.key_a, f"TLS certificate {self.key_a} holds no PEM certificate"),
            (self.cert_a, self.garbage, f"TLS key {self.garbage} holds no PEM private key"),
            (self.cert_a, self.cert_a, f"TLS key {self.cert_a} holds no PEM private key"),
            (self.cert_a, self.key_b,
             f"TLS key {self.key_b} does not belong to certificate {self.cert_a}"),
            # Never a prompt on the terminal for the passphrase.
            (self.cert_a, encrypted_key,
             f"TLS key {encrypted_key} is encrypted; Nex needs a key without a passphrase"),
        ]
        for certificate, key, message in cases:
            with self.subTest(certificate=certificate, key=key):
                with self.assertRaises(TLSError) as caught:
                    create_context(certificate, key)
                self.assertEqual(str(caught.exception), message)

    def test_certificate_and_key_in_one_file(self) -> None:
        both = os.path.join(self.folder, "both.pem")
        Path(both).write_text(Path(self.cert_a).read_text() + Path(self.key_a).read_text())
        tls = ServerTLS(both, both)
        self.assertEqual(served_certificate(tls, self.cert_a), der(self.cert_a))

    def test_fingerprint_is_what_openssl_shows(self) -> None:
        shown = subprocess.run([OPENSSL, "x509", "-in", self.cert_a, "-noout", "-fingerprint",
                                "-sha256"], check=True, capture_output=True, text=True).stdout
        self.assertEqual(certificate_fingerprint(self.cert_a), shown.strip().split("=", 1)[1])
        with self.assertRaises(TLSError):
            certificate_fingerprint(self.garbage)

    def test_plain_http_is_told_from_a_tls_handshake_by_its_first_byte(self) -> None:
        for first, plain in [(b"G", True), (b"P", True), (b"o", True), (b"\x16", False),
                             (b"\x80", False), (b"\x00", False), (b"1", False), (b"", False),
                             (b"\r", False)]:
            with self.subTest(first=first):
                self.assertIs(is_plain_http(first), plain)


class ReloadTest(CertificateFolder):
    """ServerTLS.reload: new connections get the new pair; a bad pair keeps the old."""

    def setUp(self) -> None:
        self.live = tempfile.mkdtemp(prefix="nex-live-")
        self.addCleanup(shutil.rmtree, self.live, True)
        self.cert = os.path.join(self.live, "cert.pem")
        self.key = os.path.join(self.live, "key.pem")
        shutil.copy(self.cert_a, self.cert)
        shutil.copy(self.key_a, self.key)

    def test_reload_serves_the_new_pair_and_keeps_the_old_for_a_bad_one(self) -> None:
        tls = ServerTLS(self.cert, self.key)
        old_fingerprint = tls.fingerprint
        shutil.copy(self.cert_b, self.cert)
        shutil.copy(self.key_b, self.key)
        tls.reload()
        self.assertEqual(served_certificate(tls, self.cert_b), der(self.cert_b))
        self.assertEqual(tls.fingerprint, certificate_fingerprint(self.cert_b))
        self.assertNotEqual(tls.fingerprint, old_fingerprint)
        shutil.copy(self.cert_a, self.cert)  # the key is still b's: a mismatch
        with self.assertRaises(TLSError):
            tls.reload()
        self.assertEqual(served_certificate(tls, self.cert_b), der(self.cert_b))
        self.assertEqual(tls.fingerprint, certificate_fingerprint(self.cert_b))

    def test_reload_follows_symbolic_links_renewal_repoints(self) -> None:
        cert_link = os.path.join(self.live, "fullchain.pem")
        key_link = os.path.join(self.live, "privkey.pem")
        os.symlink(self.cert_a, cert_link)
        os.symlink(self.key_a, key_link)
        tls = ServerTLS(cert_link, key_link)
        for link, target in ((cert_link, self.cert_b), (key_link, self.key_b)):
            os.remove(link)
            os.symlink(target, link)
        tls.reload()
        self.assertEqual(served_certificate(tls, self.cert_b), der(self.cert_b))


class SelfSignedTest(unittest.TestCase):
    """make_self_signed: a certificate for localhost, 127.0.0.1 and ::1 that verifies."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-self-")
        self.addCleanup(shutil.rmtree, self.folder, True)

    def assert_usable(self, certificate: str, key: str) -> None:
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode) & 0o077, 0, "key readable by others")
        tls = ServerTLS(certificate, key)
        for name in ("localhost", "127.0.0.1", "::1"):
            with self.subTest(name=name):
                context = ssl.create_default_context(cafile=certificate)
                context.verify_flags |= ssl.VERIFY_X509_STRICT
                server_end, client_end = socket.socketpair()
                server_end.settimeout(SOCKET_TIMEOUT)
                client_end.settimeout(SOCKET_TIMEOUT)
                server = tls.wrap(server_end)
                client = context.wrap_socket(client_end, server_hostname=name,
                                             do_handshake_on_connect=False)
                helper = threading.Thread(target=server.do_handshake)
                helper.start()
                try:
                    client.do_handshake()  # verifies the chain and the name
                finally:
                    helper.join(SOCKET_TIMEOUT)
                    server.close()
                    client.close()

    def test_with_the_cryptography_package(self) -> None:
        if importlib.util.find_spec("cryptography") is None:
            self.skipTest("the cryptography package is not installed")
        with mock.patch("nex.process.tls.subprocess.run",
                        side_effect=AssertionError("openssl ran")):
            certificate, key = make_self_signed(self.folder)
        self.assert_usable(certificate, key)

    @requires_openssl
    def test_with_the_openssl_command(self) -> None:
        with mock.patch.dict(sys.modules, {"cryptography": None}):
            certificate, key = make_self_signed(self.folder)
        self.assert_usable(certificate, key)
        self.assertEqual(sorted(os.listdir(self.folder)), ["certificate.pem", "key.pem"])

    def test_neither_is_one_clear_line(self) -> None:
        with mock.patch.dict(sys.modules, {"cryptography": None}), \
                mock.patch("nex.process.tls.shutil.which", return_value=None):
            with self.assertRaises(TLSError) as caught:
                make_self_signed(self.folder)
        self.assertEqual(str(caught.exception),
                         "a self-signed certificate needs the Python package cryptography or"
                         " the openssl command, and neither is available")


class RecordingTLSSocket:
    """Stands in for an SSLSocket: records each send, refuses flags, as SSLSocket does."""

    def __init__(self) -> None:
        self.sends: List[int] = []
        self.data = bytearray()

    def send(self, data: bytes, flags: int = 0) -> int:
        if flags:
            raise ValueError("non-zero flags not allowed in calls to send() on SSLSocket")
        self.sends.append(len(data))
        self.data += data
        return len(data)

    def sendall(self, data: bytes, flags: int = 0) -> None:
        self.send(data, flags)

    def fileno(self) -> int:
        raise AssertionError("a TLS socket's descriptor is no place to write bytes to")


class EncryptedWriterTest(unittest.TestCase):
    """write_response(encrypted=True): no sendfile, no flags, bounded reads, exact bytes."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-writer-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.data = os.urandom(3 * MIB + 123)
        self.path = os.path.join(self.folder, "data.bin")
        Path(self.path).write_bytes(self.data)

    def test_file_slices_are_read_in_bounded_pieces_and_sent_one_record_at_a_time(self) -> None:
        sock = RecordingTLSSocket()
        body = [b"--sep\r\n", FileSlice(0, 10), b"\r\n", FileSlice(777, 2 * MIB + 5),
                b"--sep--"]
        response = Response(206, [], body, open(self.path, "rb"))
        with mock.patch("nex.http.response.os.sendfile", side_effect=AssertionError("sendfile")), \
                mock.patch("nex.http.response.os.pread", wraps=os.pread) as pread:
            sent = write_response(sock, response, head_only=False, keep_alive=True,
                                  encrypted=True)
        expected = b"--sep\r\n" + self.data[:10] + b"\r\n" + self.data[777:777 + 2 * MIB + 5] \
            + b"--sep--"
        self.assertEqual(sent, len(expected))
        self.assertTrue(bytes(sock.data).endswith(b"\r\n\r\n" + expected))
        self.assertLessEqual(max(sock.sends), RECORD_SIZE)
        self.assertLessEqual(max(call.args[1] for call in pread.call_args_list), 256 * 1024)
        self.assertTrue(response.file.closed)

    def test_a_file_that_shrank_is_a_fault_not_a_short_body(self) -> None:
        response = Response(200, [], [FileSlice(0, len(self.data) + 10)], open(self.path, "rb"))
        with self.assertRaises(OSError) as caught:
            write_response(RecordingTLSSocket(), response, head_only=False, keep_alive=True,
                           encrypted=True)
        self.assertIn("shrank", str(caught.exception))

    @requires_openssl
    def test_over_a_real_tls_connection_byte_exact(self) -> None:
        make_certificate(self.folder, "w")
        tls = ServerTLS(os.path.join(self.folder, "w.crt"), os.path.join(self.folder, "w.key"))
        server, client = tls_pair(tls, client_context(os.path.join(self.folder, "w.crt")))
        received: List[bytes] = []
        reader = threading.Thread(target=lambda: received.append(read_all(client)))
        reader.start()
        with server, client:
            response = Response(200, [], [FileSlice(0, len(self.data))], open(self.path, "rb"))
            write_response(server, response, head_only=False, keep_alive=False,
                           encrypted=True)
            send_close_notify(server)  # the closure alert ends the client's read
            reader.join(SOCKET_TIMEOUT)
        self.assertEqual(received[0].split(b"\r\n\r\n", 1)[1], self.data)

    @requires_openssl
    def test_a_tls_client_that_stops_reading_times_out(self) -> None:
        make_certificate(self.folder, "w")
        tls = ServerTLS(os.path.join(self.folder, "w.crt"), os.path.join(self.folder, "w.key"))
        server, client = tls_pair(tls, client_context(os.path.join(self.folder, "w.crt")))
        with server, client:
            server.settimeout(0.2)
            response = Response(200, [], [FileSlice(0, len(self.data))], open(self.path, "rb"))
            with self.assertRaises(TimeoutError):
                write_response(server, response, head_only=False, keep_alive=True,
                               encrypted=True)


class TLSSettingsTest(unittest.TestCase):
    """[tls] certificate and key, their flags, and --tls-self-signed."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-settings-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        for name in ("site.crt", "site.key"):
            Path(self.folder, name).write_text("-\n")

    def settings(self, text: str) -> str:
        path = os.path.join(self.folder, "settings.conf")
        Path(path).write_text(f"[server]\ndocument_root = .\n[tls]\n{text}")
        return path

    def test_off_by_default_and_when_empty(self) -> None:
        self.assertEqual((Config().tls_certificate, Config().tls_key), ("", ""))
        config = load_config(self.settings("certificate =\nkey =\n"))
        self.assertEqual((config.tls_certificate, config.tls_key), ("", ""))

    def test_paths_resolve_against_the_settings_folder_and_links_are_kept(self) -> None:
        os.symlink("site.crt", os.path.join(self.folder, "live.crt"))
        config = load_config(self.settings("certificate = live.crt\nkey = site.key\n"))
        self.assertEqual(config.tls_certificate, os.path.join(self.folder, "live.crt"))
        self.assertEqual(config.tls_key, os.path.join(self.folder, "site.key"))

    def test_certificate_and_key_go_together(self) -> None:
        for text, message in [
                ("certificate = site.crt\n",
                 "[tls] certificate is set but key is not: HTTPS needs both"
                 " (in settings.conf, or --tls-cert and --tls-key)"),
                ("key = site.key\n",
                 "[tls] key is set but certificate is not: HTTPS needs both"
                 " (in settings.conf, or --tls-cert and --tls-key)")]:
            with self.subTest(text=text):
                self.assertEqual(refusal(self.settings(text)), message)

    def test_a_missing_file_is_named(self) -> None:
        path = self.settings("certificate = absent.crt\nkey = site.key\n")
        absent = os.path.join(self.folder, "absent.crt")
        self.assertEqual(refusal(path), f"{path} [tls] certificate = absent.crt: "
                                        f"file {absent} does not exist")
        refused = refusal(self.settings(""), {"tls_key": self.folder, "tls_certificate":
                                              os.path.join(self.folder, "site.crt")})
        self.assertEqual(refused, f"--tls-key {self.folder}: {self.folder} is not a file")

    def test_flags_replace_file_paths_that_are_not_looked_for(self) -> None:
        path = self.settings("certificate = /nowhere/old.crt\nkey = /nowhere/old.key\n")
        crt, key = (os.path.join(self.folder, name) for name in ("site.crt", "site.key"))
        config = load_config(path, {"tls_certificate": crt, "tls_key": key})
        self.assertEqual((config.tls_certificate, config.tls_key), (crt, key))
        config = load_config(self.settings("certificate =\nkey =\n"),
                             {"tls_certificate": crt, "tls_key": key})
        self.assertEqual((config.tls_certificate, config.tls_key), (crt, key))

    def test_cli_flags_reach_the_config(self) -> None:
        crt, key = (os.path.join(self.folder, name) for name in ("site.crt", "site.key"))
        status, _, err, config = run_cli(["--root", self.folder, "--tls-cert", crt,
                                          "--tls-key", key])
        self.assertEqual((status, err), (0, ""))
        self.assertEqual((config.tls_certificate, config.tls_key), (crt, key))

    def test_self_signed_refuses_certificate_flags(self) -> None:
        crt = os.path.join(self.folder, "site.crt")
        status, out, err, config = run_cli(["--root", self.folder, "--tls-self-signed",
                                            "--tls-cert", crt])
        self.assertEqual((status, out, config), (2, "", None))
        self.assertEqual(err, "nex: --tls-self-signed makes its own certificate and key;"
                              " leave out --tls-cert and --tls-key\n")

    def test_self_signed_certificate_exists_while_serving_and_is_removed_after(self) -> None:
        seen: Dict[str, object] = {}
        real_make = make_self_signed

        def make(folder: str) -> Tuple[str, str]:
            seen["folder"] = folder
            seen["mode"] = stat.S_IMODE(os.stat(folder).st_mode)
            return real_make(folder)

        with mock.patch("nex.process.cli.make_self_signed", side_effect=make):
            status, out, err, config = run_cli(["--root", self.folder, "--tls-self-signed"])
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(seen["mode"], 0o700)
        self.assertTrue(config.tls_certificate.startswith(seen["folder"] + os.sep))
        self.assertFalse(os.path.exists(seen["folder"]))
        self.assertIn(f": {config.tls_certificate}\n  SHA-256 fingerprint ", out)
        self.assertIn("localhost, 127.0.0.1, ::1", out.splitlines()[0])

    def test_self_signed_without_tools_stops_with_one_line(self) -> None:
        with mock.patch.dict(sys.modules, {"cryptography": None}), \
                mock.patch("nex.process.tls.shutil.which", return_value=None):
            status, out, err, config = run_cli(["--root", self.folder, "--tls-self-signed"])
        self.assertEqual((status, out, config), (2, "", None))
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("neither is available", err)


@requires_openssl
class ConnectionOverSocketPairTest(unittest.TestCase):
    """The connection loop with TLS over a socket pair: its states and the plain-HTTP page."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.folder = tempfile.mkdtemp(prefix="nex-conn-")
        cls.certificate, cls.key = make_certificate(cls.folder)
        Path(cls.folder, "hello.txt").write_bytes(HELLO)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.folder, ignore_errors=True)

    def setUp(self) -> None:
        self.dispatcher = socketpair_dispatcher(self.folder)
        self.log = capture_log(self)
        self.logger = self.log.logger

    def access_log(self) -> str:
        """The access log so far."""
        return self.log.access()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Tuple[Connection, socket.socket]]:
        server_end, client_end = socket.socketpair()
        client_end.settimeout(SOCKET_TIMEOUT)
        connection = Connection(server_end, "127.0.0.1", self.dispatcher, self.logger,
                                threading.Event(), ServerTLS(self.certificate, self.key))
        self.assertIs(connection.state, State.HANDSHAKING)
        worker = threading.Thread(target=connection.serve)
        worker.start()
        try:
            yield connection, client_end
        finally:
            client_end.close()
            worker.join(SOCKET_TIMEOUT)
        self.assertFalse(worker.is_alive())
        self.assertIs(connection.state, State.CLOSED)

    def test_requests_over_tls_then_a_clean_close(self) -> None:
        with self.connection() as (connection, client_end):
            # The SSLSocket takes over client_end's descriptor: it is the one to close.
            with client_context(self.certificate).wrap_socket(
                    client_end, server_hostname="localhost", suppress_ragged_eofs=False) as client:
                client.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                               b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                data = read_all(client)  # raises SSLEOFError without the closure alert
            self.assertTrue(connection.encrypted)
        self.assertEqual(data.count(b"HTTP/1.1 200 OK\r\n"), 2)
        self.assertTrue(data.endswith(HELLO))

    def test_plain_http_gets_the_https_page_in_plain_text(self) -> None:
        with self.connection() as (connection, client_end):
            client_end.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            data = read_all(client_end)
            self.assertFalse(connection.encrypted)
        self.assertTrue(data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data[:80])
        self.assertIn(b"This port speaks HTTPS", data)
        self.assertIn('"GET /hello.txt HTTP/1.1" 400 ', self.access_log())


def read_streamed(sock: socket.socket, head_only: bool = False
                  ) -> Tuple[int, Dict[str, str], str, int, bytes]:
    """One response read without keeping its body: ``(status, headers, body sha256, body
    length, bytes read past the body)``."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head ended")
        buffer += chunk
    head, rest = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, value in (line.split(":", 1) for line in lines[1:])}
    length = 0 if head_only else int(headers.get("content-length", "0"))
    digest = hashlib.sha256()
    received = 0
    while True:
        take = rest[:length - received]
        digest.update(take)
        received += len(take)
        rest = rest[len(take):]
        if received == length:
            return int(lines[0].split(" ")[1]), headers, digest.hexdigest(), received, rest
        rest = sock.recv(1024 * 1024)
        if not rest:
            raise ConnectionError(f"closed after {received} of {length} body bytes")


def make_site(root: str) -> bytes:
    """hello.txt, a folder, and big.bin (20 MiB, returned)."""
    Path(root, "hello.txt").write_bytes(HELLO)
    os.mkdir(os.path.join(root, "docs"))
    big = os.urandom(BIG_SIZE)
    Path(root, "big.bin").write_bytes(big)
    return big


@requires_openssl
class HTTPSServerTest(unittest.TestCase):
    """The real server over TLS: the file server behaves exactly as over plain HTTP."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp(prefix="nex-root-")
        cls.big = make_site(cls.root)
        cls.server = NexServer(cls.root, tls=True).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def request(self, raw: bytes, head_only: bool = False):
        with self.server.connect_tls() as sock:
            sock.sendall(raw)
            return ResponseReader(sock).read(head_only)

    def test_start_up_line_shows_an_https_url(self) -> None:
        self.assertEqual(self.server.scheme, "https")
        self.assertIn(f"at https://127.0.0.1:{self.server.port}/ ", self.server.stdout())

    def test_get_negotiates_http11_by_alpn_and_tls12_or_newer(self) -> None:
        with self.server.connect_tls() as sock:
            self.assertEqual(sock.selected_alpn_protocol(), "http/1.1")
            self.assertIn(sock.version(), ("TLSv1.2", "TLSv1.3"))
            self.assertEqual(sock.getpeercert(binary_form=True), der(self.server.certificate_path))
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, headers, body = ResponseReader(sock).read()
        self.assertEqual((status, body), (200, HELLO))
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")

    def test_keep_alive_and_pipelining_over_one_tls_connection(self) -> None:
        with self.server.connect_tls() as sock:
            reader = ResponseReader(sock)
            for _ in range(3):
                sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
                status, headers, body = reader.read()
                self.assertEqual((status, body, headers["connection"]),
                                 (200, HELLO, "keep-alive"))
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"HEAD /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual(reader.read()[0], 200)
            self.assertEqual(reader.read()[0], 404)
            status, headers, _ = reader.read(head_only=True)
            self.assertEqual((status, headers["content-length"]), (200, str(BIG_SIZE)))
            sock.sendall(b"GET /docs HTTP/1.1\r\nHost: a\r\n\r\n")
            status, headers, _ = reader.read()
            self.assertEqual((status, headers["location"]), (301, "/docs/"))

    def test_ranges(self) -> None:
        status, headers, body = self.request(
            b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=7-11\r\n\r\n")
        self.assertEqual((status, body, headers["content-range"]),
                         (206, b"world", "bytes 7-11/13"))
        status, headers, body = self.request(
            b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=0-4,7-11\r\n\r\n")
        self.assertEqual(status, 206)
        self.assertTrue(headers["content-type"].startswith("multipart/byteranges; boundary="))
        self.assertIn(b"Content-Range: bytes 0-4/13\r\n\r\nhello\r\n", body)
        self.assertIn(b"Content-Range: bytes 7-11/13\r\n\r\nworld\r\n", body)
        status, headers, _ = self.request(
            b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=50-60\r\n\r\n")
        self.assertEqual((status, headers["content-range"]), (416, "bytes */13"))

    def test_a_large_range_of_a_large_file_is_byte_exact(self) -> None:
        start, end = 1_000_001, 9 * MIB + 3
        with self.server.connect_tls() as sock:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=%d-%d\r\n\r\n"
                         % (start, end))
            status, headers, digest, length, _ = read_streamed(sock)
        self.assertEqual((status, length), (206, end - start + 1))
        self.assertEqual(digest, hashlib.sha256(self.big[start:end + 1]).hexdigest())

    def test_conditional_requests_get_304(self) -> None:
        _, headers, _ = self.request(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        for condition in (f"If-None-Match: {headers['etag']}",
                          f"If-Modified-Since: {headers['last-modified']}"):
            with self.subTest(condition=condition):
                status, got, body = self.request(
                    f"GET /hello.txt HTTP/1.1\r\nHost: a\r\n{condition}\r\n\r\n".encode())
                self.assertEqual((status, body, got["etag"]), (304, b"", headers["etag"]))
        status, _, _ = self.request(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n"
                                    b"If-Match: \"other\"\r\n\r\n")
        self.assertEqual(status, 412)

    def test_a_20_mib_file_is_byte_exact_and_the_connection_stays_usable(self) -> None:
        with self.server.connect_tls() as sock:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            status, headers, digest, length, rest = read_streamed(sock)
            self.assertEqual((status, length, rest), (200, BIG_SIZE, b""))
            self.assertEqual(digest, hashlib.sha256(self.big).hexdigest())
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual(ResponseReader(sock).read()[2], HELLO)

    @unittest.skipIf(shutil.which("curl") is None, "curl is not installed")
    def test_curl_with_cacert(self) -> None:
        port = self.server.port
        common = ["-sS", "--cacert", self.server.certificate_path, "--resolve",
                  f"localhost:{port}:127.0.0.1", "-w", "\n%{http_version} %{http_code}"]
        url = f"https://localhost:{port}/hello.txt"
        result = subprocess.run(["curl", *common, url, "--next", *common, "-r", "0-4", url],
                                capture_output=True, timeout=SOCKET_TIMEOUT,
                                stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, HELLO + b"\n1.1 200hello\n1.1 206")

    def test_plain_http_on_the_tls_port_gets_a_400_page_saying_so(self) -> None:
        with self.server.connect() as sock:
            sock.sendall(b"GET /hello.txt?plain HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = read_all(sock)
        head, body = data.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), head)
        self.assertIn(b"\r\nConnection: close", head)
        self.assertIn(b"This port speaks HTTPS", body)
        self.assertIn(b"<!DOCTYPE html>", body)
        log = self.server.wait_for_access_log(lambda text: "?plain" in text)
        self.assertIn('"GET /hello.txt?plain HTTP/1.1" 400 ', log)

    def test_tls11_client_is_refused_tls12_client_served(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, rightly
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.load_verify_locations(self.server.certificate_path)
            try:
                old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
                old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.1
            except (ValueError, ssl.SSLError):
                self.skipTest("this OpenSSL cannot offer TLS 1.1")
        with self.assertRaises(ssl.SSLError) as caught:
            self.server.connect_tls(old).close()
        if caught.exception.reason == "NO_PROTOCOLS_AVAILABLE":
            self.skipTest("this OpenSSL cannot offer TLS 1.1")
        # The refusal is the server's alert, not the client's own choice.
        self.assertEqual(caught.exception.reason, "TLSV1_ALERT_PROTOCOL_VERSION")
        tls12 = client_context(self.server.certificate_path)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        with self.server.connect_tls(tls12) as sock:
            self.assertEqual(sock.version(), "TLSv1.2")
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual(ResponseReader(sock).read()[2], HELLO)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` before the client's own time-out: it sends no
    more than a TLS alert for a handshake it gave up on, then the end of the stream (or a
    reset)."""
    received = b""
    try:
        while True:
            chunk = sock.recv(1024)
            if not chunk:
                break
            received += chunk
    except ConnectionResetError:
        pass
    # An alert record: type 21, version, length 2, level, description (RFC 8446 §6).
    return received == b"" or (len(received) == 7 and received.startswith(b"\x15\x03")
                                and received[3:5] == b"\x00\x02")


@requires_openssl
class TLSTimeLimitTest(unittest.TestCase):
    """Time limits hold on TLS connections: the kernel's time-outs do not reach an SSLSocket,
    so a client stalling the handshake, its head or its reading is closed all the same."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp(prefix="nex-root-")
        make_site(cls.root)
        cls.server = NexServer(cls.root, tls=True, settings={
            "timeouts": {"request_head": "1", "keep_alive": "1", "send": "1"}}).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_a_client_that_never_starts_the_handshake_is_closed_after_request_head(self) -> None:
        with self.server.connect() as sock:
            self.assertTrue(closed_by_server(sock))

    def test_a_client_that_stalls_mid_handshake_is_closed_after_request_head(self) -> None:
        with self.server.connect() as sock:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello
            self.assertTrue(closed_by_server(sock))

    def test_a_partial_head_over_tls_gets_408(self) -> None:
        with self.server.connect_tls() as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n")
            data = read_all(sock)
        self.assertTrue(data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:80])

    def test_an_idle_keep_alive_connection_is_closed_with_the_closure_alert(self) -> None:
        context = client_context(self.server.certificate_path)
        sock = context.wrap_socket(self.server.connect(), server_hostname="localhost",
                                   suppress_ragged_eofs=False)
        with sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual(ResponseReader(sock).read()[2], HELLO)
            self.assertEqual(sock.recv(1024), b"")  # SSLEOFError without close_notify

    def test_a_client_that_stops_reading_is_dropped_and_logged(self) -> None:
        with self.server.connect_tls() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big.bin?stalled HTTP/1.1\r\nHost: a\r\n\r\n")
            log = self.server.wait_for_access_log(lambda text: "?stalled" in text)
        line = next(line for line in log.splitlines() if "?stalled" in line)
        self.assertIn('"GET /big.bin?stalled HTTP/1.1" 200 ', line)
        self.assertLess(int(line.split('" 200 ')[1].split()[0].replace("-", "0")), BIG_SIZE)


@requires_openssl
class HandshakeInWorkerTest(unittest.TestCase):
    """Handshakes happen in worker threads: a stalled one holds no one else up, and the
    connection caps count it."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-root-")
        self.addCleanup(shutil.rmtree, self.root, True)
        Path(self.root, "hello.txt").write_bytes(HELLO)

    def start(self, max_connections: int) -> None:
        # A long head time-out: a handshake in the accept loop would hold the next client
        # past its socket time-out.
        self.server = NexServer(self.root, tls=True, settings={
            "timeouts": {"request_head": "120", "shutdown_grace": "120"},
            "server": {"max_connections": str(max_connections)}}).start()
        self.addCleanup(self.server.stop)

    def get_hello(self) -> bytes:
        with self.server.connect_tls() as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            return ResponseReader(sock).read()[2]

    def test_stalled_handshakes_count_against_the_cap_and_block_no_one(self) -> None:
        self.start(max_connections=2)
        first, second = self.server.connect(), self.server.connect()
        self.addCleanup(first.close)
        with second:
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                self.server.connect_tls().close()  # a third connection: past the cap
            log = self.server.wait_for_access_log(lambda text: '"-" 503 ' in text)
            self.assertIn('"-" 503 ', log)

        def served() -> bool:
            try:
                return self.get_hello() == HELLO
            except (ssl.SSLError, ConnectionError):
                return False
        # The second's slot frees once its worker has seen it close; the first still stalls.
        self.assertTrue(wait_until(served, SOCKET_TIMEOUT), "no slot came free")


    def test_sigterm_wakes_stalled_handshakes_instead_of_waiting_the_grace_period(self) -> None:
        self.start(max_connections=3)
        silent, halfway = self.server.connect(), self.server.connect()
        with silent, halfway:
            halfway.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello
            self.assertEqual(self.get_hello(), HELLO)  # both are in their workers by now
            self.server.signal(signal.SIGTERM)
            # Waiting for the 120 s grace period would outlast this wait.
            self.assertEqual(self.server.wait(SOCKET_TIMEOUT), 0)
            self.assertTrue(closed_by_server(silent))
            self.assertTrue(closed_by_server(halfway))


class StartUpTest(CertificateFolder):
    """A certificate or key that cannot serve stops Nex before it listens: one line, exit 2."""

    def start(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, os.path.join(REPO, "server.py"), "--port", "0",
                               "--root", self.folder, *args], capture_output=True, text=True,
                              timeout=SOCKET_TIMEOUT, cwd=REPO, stdin=subprocess.DEVNULL)

    def test_bad_pairs_stop_start_up_with_one_line_and_status_2(self) -> None:
        garbage = os.path.join(self.folder, "garbage.crt")
        Path(garbage).write_text("junk\n")
        for args, message in [
                (("--tls-cert", self.cert_a, "--tls-key", self.key_b),
                 f"nex: TLS key {self.key_b} does not belong to certificate {self.cert_a}\n"),
                (("--tls-cert", garbage, "--tls-key", self.key_a),
                 f"nex: TLS certificate {garbage} holds no PEM certificate\n"),
                (("--tls-cert", self.cert_a),
                 "nex: [tls] certificate is set but key is not: HTTPS needs both"
                 " (in settings.conf, or --tls-cert and --tls-key)\n")]:
            with self.subTest(args=args):
                result = self.start(*args)
                self.assertEqual((result.returncode, result.stdout, result.stderr),
                                 (2, "", message))


@requires_openssl
class RotationTest(unittest.TestCase):
    """SIGHUP re-reads the certificate and key: new connections get the new pair, a request
    in flight on an open connection is answered, and a broken pair keeps the old one with
    one line in the log."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-rotate-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        Path(self.folder, "hello.txt").write_bytes(HELLO)
        self.pairs = {name: make_certificate(self.folder, name) for name in "abc"}
        # Links, as certbot's live/ folder has: renewal points them at new files.
        self.cert_link = os.path.join(self.folder, "fullchain.pem")
        self.key_link = os.path.join(self.folder, "privkey.pem")
        self.point(self.pairs["a"])
        self.server = NexServer(self.folder, settings={
            "tls": {"certificate": self.cert_link, "key": self.key_link}}).start()
        self.addCleanup(self.server.stop)

    def point(self, pair: Tuple[str, str], key: Optional[str] = None) -> None:
        for link, target in ((self.cert_link, pair[0]), (self.key_link, key or pair[1])):
            temporary = link + ".new"
            os.symlink(target, temporary)
            os.replace(temporary, link)

    def served(self) -> bytes:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the test compares the certificate itself
        with self.server.connect_tls(context) as sock:
            return sock.getpeercert(binary_form=True)

    def test_sighup_rotates_and_a_broken_pair_keeps_the_old(self) -> None:
        cert_a, cert_b = self.pairs["a"][0], self.pairs["b"][0]
        self.assertEqual(self.served(), der(cert_a))
        before = self.server.connect_tls(client_context(cert_a))
        self.addCleanup(before.close)
        reader = ResponseReader(before)
        before.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(reader.read()[2], HELLO)

        before.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n")  # in flight: not complete

        self.point(self.pairs["b"])
        self.server.signal(signal.SIGHUP)
        reloaded = f"TLS certificate reloaded from {self.cert_link} " \
                   f"(SHA-256 {certificate_fingerprint(cert_b)})"
        self.assertIn(reloaded, self.server.wait_for_access_log(lambda t: reloaded in t))
        self.assertEqual(self.served(), der(cert_b))
        before.sendall(b"\r\n")  # answered on a's session
        self.assertEqual(reader.read()[2], HELLO)

        self.point(self.pairs["c"], key=self.pairs["a"][1])  # c's certificate, a's key
        self.server.signal(signal.SIGHUP)
        wait_until(lambda: "not reloaded" in self.server.error_log(), SOCKET_TIMEOUT, 0.05)
        lines = [line for line in self.server.error_log().splitlines() if line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("warning: TLS certificate not reloaded; the previous one stays: TLS key "
                      f"{self.key_link} does not belong to certificate {self.cert_link}",
                      lines[0])
        self.assertEqual(self.served(), der(cert_b))
        self.assertIsNone(self.server.process.poll())


if __name__ == "__main__":
    unittest.main()
