"""``mlplane serve``: what it refuses before anything starts, and HTTPS with token auth."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mlplane.config import load_settings
from mlplane.services import Services
from mlplane.serving.supervisor import LOOPBACK_ONLY
from tests.cli.helpers import Invoke
from tests.serving.test_supervisor import ADMIN, Serve, make_home, predict


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key, and the key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


def _refused(cli: Invoke, *args: str) -> str:
    result = cli("serve", "--port", "0", *args)
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


def test_auth_none_is_refused_off_loopback(cli: Invoke) -> None:
    assert LOOPBACK_ONLY in _refused(cli, "--auth", "none", "--host", "0.0.0.0")


def test_tls_needs_both_files_and_readable_ones(cli: Invoke, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert "--tls-cert needs --tls-key too" in _refused(cli, "--tls-cert", str(cert))
    assert "--tls-key needs --tls-cert too" in _refused(cli, "--tls-key", str(key))
    missing = tmp_path / "nope.pem"
    out = _refused(cli, "--tls-cert", str(missing), "--tls-key", str(key))
    assert f"cannot read the TLS certificate {missing}" in out
    (tmp_path / "other").mkdir()
    _, other_key = self_signed(tmp_path / "other")
    out = _refused(cli, "--tls-cert", str(cert), "--tls-key", str(other_key))
    assert "do not load as a pair" in out


def test_unknown_deployments_and_worker_counts_are_refused(cli: Invoke) -> None:
    assert "no deployment named 'ghost'" in _refused(cli, "--deployment", "ghost")
    assert "--min-workers must be between 1 and --workers (2)" in _refused(
        cli, "--workers", "2", "--min-workers", "3"
    )


@pytest.mark.slow
def test_https_with_token_auth(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    home = make_home(tmp_path / "home", {"d": {}})
    services = Services.from_settings(load_settings(home=home))
    try:
        token = services.identities.bootstrap(ADMIN).secret
    finally:
        services.close()
    trust = ssl.create_default_context(cafile=str(cert))
    srv = Serve(home, "--workers", "1", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        srv.start(verify=trust)
        assert srv.url.startswith("https://127.0.0.1:")
        assert "hosting d (m@1, project default)" in srv.log()
        with httpx.Client(verify=trust, timeout=10) as c:
            assert predict(c, srv.url, "d").status_code == 401
            c.headers["Authorization"] = f"Bearer {token}"
            r = predict(c, srv.url, "d")
            assert r.status_code == 200, r.text
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port
            httpx.get(srv.url.replace("https", "http") + "/v2/health/live", timeout=5)
    finally:
        assert srv.stop() == 0, srv.log()
