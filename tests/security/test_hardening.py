"""In transit and hardening: HTTPS with a private CA, security headers and CORS, per-token
rate limits, and error bodies that give nothing away. Real servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import APIRouter
from typer.testing import CliRunner, Result

from mlplane import errors
from mlplane.cli.main import app as cli_app
from mlplane.client import Client
from mlplane.config import load_settings
from mlplane.security import local_admin
from mlplane.server.app import create_app
from mlplane.server.mlflow_api._wire import MlflowRoute
from mlplane.services import Services
from tests.conftest import ServerProcess

ROOT = local_admin("root")
MLFLOW = "/api/2.0/mlflow"

# -- certificates --------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA and a server certificate it signed, for 127.0.0.1 as an IP SAN."""
    folder = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("mlplane test CA"))
        .issuer_name(_name("mlplane test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pki(
        ca=folder / "ca.pem",
        cert=folder / "server.pem",
        key=_pem_key(key, folder / "server.key"),
        other_key=_pem_key(ec.generate_private_key(ec.SECP256R1()), folder / "other.key"),
    )


# -- HTTPS through `mlplane server --tls-cert --tls-key` -----------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def https_url(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlplane server`` over HTTPS; the rate limit is off (0) with a burst of 2."""
    home = tmp_path_factory.mktemp("tls")
    port = _free_port()
    env = {
        **os.environ,
        "MLPLANE_HOME": str(home),
        "MLPLANE_RATE_LIMIT_PER_S": "0",
        "MLPLANE_RATE_LIMIT_BURST": "2",
    }
    env.pop("MLPLANE_URI", None)
    argv = [sys.executable, "-m", "mlplane.cli.main", "server", "--port", str(port)]
    argv += ["--auth", "none", "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(pki.ca))
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"server did not start: {log.read_text()}"
            try:
                if httpx.get(url + "/healthz", verify=trusted, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_sdk_with_the_ca_bundle_works_over_https(
    https_url: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPLANE_CA_BUNDLE", str(pki.ca))
    client = Client(https_url)
    try:
        eid = client.create_experiment(f"tls-{uuid.uuid4().hex[:8]}")
        run = client.create_run(eid)
        client.log_param(run.info.run_id, "over", "https")
        assert client.get_run(run.info.run_id).data.params == {"over": "https"}
    finally:
        client.close()


def test_sdk_without_the_ca_bundle_refuses_the_certificate(
    https_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLPLANE_CA_BUNDLE", raising=False)
    client = Client(settings=load_settings(uri=https_url, retry_max_s=30))
    try:
        with pytest.raises(errors.Unavailable) as caught:
            client.create_experiment("never-sent")
    finally:
        client.close()
    message = str(caught.value)
    assert "certificate" in message and "did not verify" in message
    assert "MLPLANE_CA_BUNDLE" in message


def test_an_unreadable_ca_bundle_is_named(https_url: str, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="MLPLANE_CA_BUNDLE"):
        Client(settings=load_settings(uri=https_url, ca_bundle=tmp_path / "missing.pem"))


def test_https_responses_carry_hsts_and_the_limit_can_be_off(https_url: str, pki: Pki) -> None:
    with httpx.Client(base_url=https_url, verify=ssl.create_default_context(cafile=pki.ca)) as h:
        statuses = [h.get("/api/v1/experiments").status_code for _ in range(12)]
        resp = h.get("/api/v1/experiments")
    assert statuses == [200] * 12  # burst 2, but a rate of 0 turns the limit off
    assert resp.headers["strict-transport-security"] == "max-age=31536000"


def _cli(*args: str) -> Result:
    return CliRunner().invoke(cli_app, ["server", *args], catch_exceptions=False)


def test_server_tls_options_are_checked_up_front(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPLANE_HOME", str(tmp_path))
    for argv in (["--tls-cert", str(pki.cert)], ["--tls-key", str(pki.key)]):
        alone = _cli(*argv)
        assert alone.exit_code == 2
        assert "needs --tls-" in alone.stderr and "MLPLANE_TLS_KEY" in alone.stderr
    missing = _cli("--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(pki.key))
    assert missing.exit_code == 2 and "cannot read the TLS certificate" in missing.stderr
    mismatched = _cli("--tls-cert", str(pki.cert), "--tls-key", str(pki.other_key))
    assert mismatched.exit_code == 2 and "do not load as a pair" in mismatched.stderr
    # The same check applies to the settings (environment, mlplane.toml).
    monkeypatch.setenv("MLPLANE_TLS_KEY", str(pki.key))
    from_env = _cli()
    assert from_env.exit_code == 2 and "--tls-key needs --tls-cert" in from_env.stderr
    assert "Traceback" not in from_env.output


# -- headers and CORS ----------------------------------------------------------------------

BASELINE = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _assert_hardened(resp: httpx.Response) -> None:
    for name, value in BASELINE.items():
        assert resp.headers.get(name) == value, (resp.request.url, name)
    assert resp.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert resp.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in resp.headers  # plain HTTP here


def test_every_kind_of_response_carries_the_headers(server: Any) -> None:
    with httpx.Client(base_url=server.url) as h:
        eid = h.post("/api/v1/experiments", json={"name": f"hdr-{uuid.uuid4().hex}"}).json()
        run_id = h.post("/api/v1/runs", json={"experiment_id": eid["experiment_id"]}).json()
        run_id = run_id["info"]["run_id"]
        assert h.put(f"/api/v1/runs/{run_id}/artifacts/page.html", content=b"<script>")
        responses = [
            h.get("/healthz"),
            h.get("/openapi.json"),
            h.get(f"/api/v1/runs/{run_id}"),
            h.get(f"/api/v1/runs/{run_id}/artifacts/page.html"),  # streamed
            h.get("/api/v1/experiments/0" + "9" * 30),  # problem+json 404
            h.post(MLFLOW + "/runs/get", json={}),  # MLflow error body
        ]
    for resp in responses:
        _assert_hardened(resp)


def test_cors_is_closed_by_default(server: Any) -> None:
    origin = {"Origin": "https://app.example"}
    with httpx.Client(base_url=server.url) as h:
        plain = h.get("/api/v1/experiments", headers=origin)
        preflight = h.options(
            "/api/v1/experiments",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        )
    assert plain.status_code == 200
    for resp in (plain, preflight):
        assert not any(k.startswith("access-control-") for k in resp.headers), resp.headers


def test_docs_load_with_a_policy_that_names_their_inline_script(server: Any) -> None:
    resp = httpx.get(server.url + "/docs")
    assert resp.status_code == 200 and "swagger-ui" in resp.text
    policy = resp.headers["content-security-policy"]
    scripts = re.findall(r"<script>(.*?)</script>", resp.text, re.DOTALL)
    assert scripts
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "https://cdn.jsdelivr.net" in policy and "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy
    for name, value in BASELINE.items():
        assert resp.headers[name] == value


# -- rate limits ---------------------------------------------------------------------------


@dataclass
class Limited:
    url: str
    services: Services

    def token(self) -> str:
        """A fresh token (its own, full bucket) of a fresh platform admin."""
        name = f"u{uuid.uuid4().hex[:10]}"
        self.services.identities.create_identity(ROOT, name)
        self.services.identities.grant(ROOT, name, "*", "admin")
        return self.services.identities.create_token(ROOT, name).secret


BURST = 5


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    """Token auth, bursts of 5 and a refill so slow (one per 1000 s) that none comes back
    during the test, and one CORS origin."""
    home = tmp_path_factory.mktemp("limited")
    svc = Services.from_settings(load_settings(home=home))
    svc.identities.bootstrap(ROOT, "boss")
    env = {
        "MLPLANE_AUTH": "token",
        "MLPLANE_RATE_LIMIT_PER_S": "0.001",
        "MLPLANE_RATE_LIMIT_BURST": str(BURST),
        "MLPLANE_CORS_ORIGINS": "https://app.example",
    }
    srv = ServerProcess(home, env=env)
    try:
        yield Limited(srv.url, svc)
    finally:
        srv.stop()
        svc.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_burst_past_the_limit_gets_429_with_retry_after(limited: Limited) -> None:
    with httpx.Client(base_url=limited.url, headers=_bearer(limited.token())) as h:
        got = [h.get("/api/v1/experiments") for _ in range(BURST + 7)]
    assert [r.status_code for r in got].count(200) == BURST
    refused = [r for r in got if r.status_code == 429]
    assert len(refused) == 7
    body = refused[0].json()
    assert refused[0].headers["content-type"] == "application/problem+json"
    assert body["code"] == "RATE_LIMITED" and body["status"] == 429
    assert body["retry_after"] == int(refused[0].headers["retry-after"]) >= 1
    _assert_hardened(refused[0])


def test_mlflow_paths_get_request_limit_exceeded(limited: Limited) -> None:
    with httpx.Client(base_url=limited.url, headers=_bearer(limited.token())) as h:
        got = [h.get(MLFLOW + "/experiments/search", params={"max_results": 1}) for _ in range(9)]
    assert [r.status_code for r in got].count(200) == BURST
    refused = got[-1]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"


def test_each_token_has_its_own_bucket_and_health_is_never_limited(limited: Limited) -> None:
    spent = _bearer(limited.token())
    with httpx.Client(base_url=limited.url) as h:
        for _ in range(BURST):
            assert h.get("/api/v1/experiments", headers=spent).status_code == 200
        assert h.get("/api/v1/experiments", headers=spent).status_code == 429
        assert h.get("/api/v1/experiments", headers=_bearer(limited.token())).status_code == 200
        for path in ("/healthz", "/readyz", "/metrics") * 4:
            assert h.get(path, headers=spent).status_code == 200, path


def test_the_sdk_reports_rate_limited(limited: Limited) -> None:
    settings = load_settings(uri=limited.url, token=limited.token(), retry_max_s=0)
    client = Client(settings=settings)
    try:
        with pytest.raises(errors.RateLimited, match="too many requests"):
            for _ in range(BURST + 1):
                client.search_experiments()
    finally:
        client.close()


def test_cors_answers_only_the_configured_origin(limited: Limited) -> None:
    with httpx.Client(base_url=limited.url) as h:
        ask = {"Access-Control-Request-Method": "POST"}
        ok = h.options("/api/v1/experiments", headers={"Origin": "https://app.example", **ask})
        other = h.options("/api/v1/experiments", headers={"Origin": "https://evil.example", **ask})
        get = h.get(
            "/api/v1/experiments",
            headers={"Origin": "https://app.example", **_bearer(limited.token())},
        )
        get_other = h.get(
            "/api/v1/experiments",
            headers={"Origin": "https://evil.example", **_bearer(limited.token())},
        )
    assert ok.status_code == 200  # a preflight carries no token, and needs none
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert get.status_code == 200
    assert get.headers["access-control-allow-origin"] == "https://app.example"
    for resp in (other, get_other):
        assert "access-control-allow-origin" not in resp.headers


# -- nothing internal in errors ------------------------------------------------------------


def test_an_unexpected_exception_gives_a_bare_500(tmp_path: Path) -> None:
    secret = str(tmp_path / "internal" / "secret.py")
    settings = load_settings(home=tmp_path / "home", auth="none")
    svc = Services.from_settings(settings)
    app = create_app(settings, svc)

    def boom() -> None:
        raise RuntimeError(f"cannot open {secret}")

    app.add_api_route("/api/v1/boom", boom)
    mlflow = APIRouter(route_class=MlflowRoute)
    mlflow.add_api_route(MLFLOW + "/boom", boom)
    app.include_router(mlflow)

    async def call(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as h:
            return await h.get(path)

    try:
        api, wire = asyncio.run(call("/api/v1/boom")), asyncio.run(call(MLFLOW + "/boom"))
    finally:
        svc.close()
    assert api.status_code == 500 and api.json()["code"] == "INTERNAL_ERROR"
    assert wire.status_code == 500 and wire.json()["error_code"] == "INTERNAL_ERROR"
    for resp in (api, wire):
        text = resp.text
        assert "secret.py" not in text and str(tmp_path) not in text
        assert "Traceback" not in text and "RuntimeError" not in text and ".py" not in text
        _assert_hardened(resp)  # rendered outside the app's middleware, headers still on


def _raw(port: int, method: str, target: str, body: bytes | None = None) -> tuple[int, Any]:
    """Sent byte for byte: httpx would remove the dot segments before sending."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, body=body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


@pytest.mark.parametrize(
    "tail",
    ["../../escape.txt", "a/%2e%2e/%2e%2e/escape", "..%2Fescape", "nul%00.txt", "%2Fetc/passwd"],
)
def test_api_v1_artifact_paths_cannot_escape(server: Any, tail: str) -> None:
    # The MLflow artifact routes have the same cases in tests/server/mlflow_api.
    sdk = Client(server.url)
    try:
        run_id = sdk.create_run(sdk.create_experiment(f"esc-{uuid.uuid4().hex}")).info.run_id
    finally:
        sdk.close()
    target = f"/api/v1/runs/{run_id}/artifacts/{tail}"
    for method, body in (("PUT", b"x"), ("GET", None)):
        status, payload = _raw(server.port, method, target, body)
        assert status == 400, (method, tail, payload)
        assert payload["code"] == "INVALID_INPUT"


def test_mlflow_artifact_download_of_an_absolute_path_is_refused(server: Any) -> None:
    # Traversal, NUL and absolute uploads and listings: tests/server/mlflow_api.
    status, payload = _raw(server.port, "GET", "/api/2.0/mlflow-artifacts/artifacts/%2Fetc/passwd")
    assert status == 400 and payload["error_code"] == "INVALID_PARAMETER_VALUE"
