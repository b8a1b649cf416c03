"""HTTPS policy: TLS 1.2 cipher suites, Strict-Transport-Security, and the message for a
key of the other type than its certificate."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest
from pathlib import Path
from typing import List
from unittest import mock

from nex.process.config import load_config
from nex.process.tls import ServerTLS, TLSError, create_context
from tests.support import (OPENSSL, SOCKET_TIMEOUT, NexServer, ResponseReader, client_context,
                           make_certificate, read_all, requires_openssl)
from tests.support import tls_pair
from tests.support.settings import refusal, run as run_cli


@requires_openssl
class CipherPolicyTest(unittest.TestCase):
    """TLS 1.2 offers only ECDHE key exchange with an AEAD cipher (no CBC: LUCKY13)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.folder = tempfile.mkdtemp(prefix="nex-tls-")
        cls.certificate, cls.key = make_certificate(cls.folder)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.folder, ignore_errors=True)

    def test_tls12_suites_are_ecdhe_with_aead_only(self) -> None:
        suites = [suite for suite in create_context(self.certificate, self.key).get_ciphers()
                  if suite["protocol"] == "TLSv1.2"]
        self.assertTrue(suites)
        for suite in suites:
            with self.subTest(suite=suite["name"]):
                self.assertEqual(suite["kea"], "kx-ecdhe")
                self.assertTrue(suite["aead"])

    def test_lucky13_cbc_suites_are_refused_in_the_handshake(self) -> None:
        client = client_context(self.certificate)
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        client.set_ciphers("ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA256:"
                           "AES256-SHA256:AES128-SHA256")
        server_end, client_end = socket.socketpair()
        with server_end, client_end:
            server_end.settimeout(SOCKET_TIMEOUT)
            client_end.settimeout(SOCKET_TIMEOUT)
            server = ServerTLS(self.certificate, self.key).wrap(server_end)
            self.addCleanup(server.close)
            refused: List[BaseException] = []

            def offer() -> None:
                try:
                    client.wrap_socket(client_end, server_hostname="localhost")
                except ssl.SSLError as error:
                    refused.append(error)

            helper = threading.Thread(target=offer)
            helper.start()
            with self.assertRaises(ssl.SSLError) as caught:
                server.do_handshake()
            helper.join(SOCKET_TIMEOUT)
        self.assertEqual(caught.exception.reason, "NO_SHARED_CIPHER")
        self.assertEqual(len(refused), 1)

    def test_a_tls12_aead_client_is_served(self) -> None:
        client = client_context(self.certificate)
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        server, client_end = tls_pair(ServerTLS(self.certificate, self.key), client)
        with server, client_end:
            self.assertEqual(client_end.version(), "TLSv1.2")
            self.assertIn("GCM", client_end.cipher()[0])

    def test_a_key_of_the_other_type_is_named_as_such(self) -> None:
        rsa_key = os.path.join(self.folder, "rsa.key")
        subprocess.run([OPENSSL, "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", rsa_key], check=True,
                       capture_output=True, stdin=subprocess.DEVNULL)
        with self.assertRaises(TLSError) as caught:
            create_context(self.certificate, rsa_key)
        message = str(caught.exception)
        self.assertNotIn("holds no PEM private key", message)
        self.assertIn(f"TLS key {rsa_key} is not of the type of the public key in certificate"
                      f" {self.certificate}", message)
        self.assertIn("RSA", message)


class HSTSSettingTest(unittest.TestCase):
    """[tls] hsts: a max-age in seconds, 0 (the default) for none; never for a
    self-signed certificate."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-settings-")
        self.addCleanup(shutil.rmtree, self.folder, True)

    def settings(self, text: str) -> str:
        path = os.path.join(self.folder, "settings.conf")
        Path(path).write_text(f"[server]\ndocument_root = .\n[tls]\n{text}")
        return path

    def test_off_by_default_a_max_age_when_set(self) -> None:
        self.assertEqual(load_config(self.settings("")).tls_hsts, 0)
        self.assertEqual(load_config(self.settings("hsts = 31536000\n")).tls_hsts, 31536000)

    def test_a_bad_value_is_named(self) -> None:
        for text in ("-1", "1y", "2147483649", ""):
            with self.subTest(text=text):
                self.assertIn("[tls] hsts", refusal(self.settings(f"hsts = {text}\n")))

    @requires_openssl
    def test_never_with_a_self_signed_certificate(self) -> None:
        with mock.patch("nex.process.cli.make_self_signed", side_effect=make_certificate):
            status, _, err, config = run_cli(["--config", self.settings("hsts = 31536000\n"),
                                              "--tls-self-signed"])
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(config.tls_hsts, 0)


@requires_openssl
class HSTSServerTest(unittest.TestCase):
    """The real server sends Strict-Transport-Security over TLS only (RFC 6797 §7.2)."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-root-")
        self.addCleanup(shutil.rmtree, self.root, True)
        Path(self.root, "hello.txt").write_bytes(b"hello\n")

    def start(self, **tls) -> NexServer:
        server = NexServer(self.root, settings={"tls": tls} if tls else None, tls=True)
        self.addCleanup(server.stop)
        return server.start()

    def get(self, server: NexServer, path: str = "/hello.txt"):
        with server.connect_tls() as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            return ResponseReader(sock).read()

    def test_every_response_over_tls_carries_it_when_set(self) -> None:
        server = self.start(hsts=31536000)
        for path, status in (("/hello.txt", 200), ("/missing", 404)):
            with self.subTest(path=path):
                got, headers, _ = self.get(server, path)
                self.assertEqual(got, status)
                self.assertEqual(headers["strict-transport-security"], "max-age=31536000")

    def test_never_over_plain_http_on_the_tls_port(self) -> None:
        server = self.start(hsts=31536000)
        with server.connect() as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            data = read_all(sock)
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:80])
        self.assertNotIn(b"strict-transport-security", data.lower())

    def test_not_sent_by_default(self) -> None:
        _, headers, _ = self.get(self.start())
        self.assertNotIn("strict-transport-security", headers)
