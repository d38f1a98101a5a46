"""TLS without a proxy: `serve --tls-cert/--tls-key`, and clients that trust a private CA."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hivectl.client import HivekitClient
from hivectl.core.tls import client_context
from server.io.app import HivekitServer
from tests.cli.conftest import clean_env, invoke, run_cli, words
from tests.conftest import SECRET, mint, running


@dataclass
class Pki:
    ca: Path
    ca_key: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def issue(pki: Pki) -> int:
    """(Re)write the server's certificate and key, signed by the CA; returns the serial."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(_pem_key(key))
    return cert.serial_number


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A private CA and a certificate it signed for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("hivectl test CA"))
        .issuer_name(_name("hivectl test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        tmp_path / "ca.pem", tmp_path / "ca.key", tmp_path / "server.pem", tmp_path / "server.key"
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.ca_key.write_bytes(_pem_key(ca_key))
    issue(pki)
    return pki


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[HivekitServer]:
    async with running(
        {"server.tls_cert": str(pki.cert), "server.tls_key": str(pki.key)}
    ) as server:
        yield server


async def test_clients_that_trust_the_ca_speak_wss_and_https(
    tls_server: HivekitServer, pki: Pki
) -> None:
    assert tls_server.ws_url.startswith("wss://127.0.0.1:")
    assert tls_server.api_url is not None and tls_server.api_url.startswith("https://")
    trusted = client_context(str(pki.ca))
    async with HivekitClient(tls_server.ws_url, mint(), tls=trusted) as client:
        await client.realm.create("secure")
        assert list(await client.realm.list()) == ["secure"]

    def post() -> Any:
        request = urllib.request.Request(
            tls_server.api_url or "",
            data=json.dumps([{"typ": "rea", "act": "lis", "cid": 1}]).encode(),
            headers={"Authorization": f"Bearer {mint()}", "Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=trusted)
        )
        with opener.open(request, timeout=5) as response:
            return json.loads(response.read())

    [reply] = await asyncio.to_thread(post)
    assert reply["res"] == "suc" and "secure" in json.dumps(reply["dat"])


async def test_a_client_without_the_ca_refuses_the_server(tls_server: HivekitServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        async with HivekitClient(tls_server.ws_url, mint(), reconnect=False):
            pass


async def test_health_and_watch_take_a_ca_file(
    tls_server: HivekitServer, pki: Pki, tmp_path: Path
) -> None:
    url = tls_server.ws_url
    healthy = await asyncio.to_thread(invoke, "health", "--url", url, "--ca-file", str(pki.ca))
    assert healthy.exit_code == 0, healthy.stderr
    assert "https://" in healthy.stdout

    untrusted = await asyncio.to_thread(invoke, "health", "--url", url)
    assert untrusted.exit_code == 3
    assert "certificate verify failed" in words(untrusted.stderr)

    async with HivekitClient(url, mint(), tls=client_context(str(pki.ca))) as client:
        await client.realm.create("watched")
    watch_args = ("watch", "realm", "watched", "--url", url, "--json", "--timeout", "2s")
    env = clean_env(HIVECTL_AUTH_SECRET=SECRET)
    watched = await asyncio.to_thread(
        run_cli, *watch_args, "--ca-file", str(pki.ca), cwd=tmp_path, env=env
    )
    assert watched.returncode == 0, watched.stderr
    assert watched.stderr == ""
    refused = await asyncio.to_thread(run_cli, *watch_args, cwd=tmp_path, env=env)
    assert refused.returncode != 0
    assert "certificate verify failed" in words(refused.stderr)


def test_serve_refuses_unusable_tls_files_naming_them(tmp_path: Path, pki: Pki) -> None:
    env = {"HIVECTL_AUTH_SECRET": SECRET, "HIVECTL_STORAGE_BACKEND": "memory"}
    missing = invoke("serve", "--tls-cert", str(pki.cert), env=env)
    assert missing.exit_code == 2
    assert "[server].tls_key" in words(missing.stderr)

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    wrong = invoke("serve", "--tls-cert", str(garbage), "--tls-key", str(pki.key), env=env)
    assert wrong.exit_code == 2
    assert f"cannot use TLS certificate {garbage}" in words(wrong.stderr)

    unread = invoke(
        "serve", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(pki.key), env=env
    )
    assert unread.exit_code == 2
    assert f"cannot read TLS file {tmp_path / 'nope.pem'}" in words(unread.stderr)


def test_a_broken_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    broken = tmp_path / "ca.pem"
    broken.write_text("nothing here")
    result = invoke("health", "--url", "wss://127.0.0.1:1/ws", "--ca-file", str(broken))
    assert result.exit_code == 2
    assert f"cannot use CA file {broken}" in words(result.stderr)


async def test_a_reload_serves_a_renewed_certificate_to_new_connections(
    tls_server: HivekitServer, pki: Pki
) -> None:
    trusted = client_context(str(pki.ca))

    async def serial() -> int:
        _, writer = await asyncio.open_connection("127.0.0.1", tls_server.port, ssl=trusted)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return x509.load_der_x509_certificate(der).serial_number

    async with HivekitClient(tls_server.ws_url, mint(), tls=trusted) as live:
        before = await serial()
        renewed = issue(pki)  # written over the old files, as certbot or an ACME client does
        assert renewed != before
        tls_server.reload(tls_server.settings)
        assert await serial() == renewed
        await live.system.heartbeat()  # the connection made before the reload goes on
