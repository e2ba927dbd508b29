"""Credentials never stored in params or tags, nor written to the server's logs."""

from __future__ import annotations

import base64
import logging
import random
import string
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlplane.client import Client
from mlplane.config import load_settings
from mlplane.errors import InvalidInput, Unauthenticated
from mlplane.security import tokens
from mlplane.security.secrets_scan import SecretsLogFilter, find_secrets, mask
from mlplane.server.app import create_app
from mlplane.services import Services
from tests.conftest import ServerProcess

MLFLOW = "/api/2.0/mlflow"
_rng = random.Random(7)


def _chars(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


# Built at run time, so no scanner of this repository mistakes them for leaked credentials.
SECRETS: dict[str, str] = {
    "mlplane_token": tokens.new_secret(),
    "aws_access_key": "AKIA" + _chars(16, string.ascii_uppercase + string.digits),
    "aws_secret_key": _chars(18) + "/" + _chars(10) + "+" + _chars(10),
    "github_token": "gh" + "p_" + _chars(36),
    "slack_token": "xo" + "xb-" + _chars(12, string.digits) + "-" + _chars(24),
    "stripe_key": "sk" + "_live_" + _chars(24),
    "google_api_key": "AI" + "za" + _chars(35),
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\n"
    + _chars(64)
    + "\n-----END RSA PRIVATE KEY-----",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ." + _chars(43),
    "url_password": "postgresql://ml:" + _chars(12) + "@db.internal:5432/features",
    "password": "host=db user=ml password=" + _chars(12) + " dbname=features",
}
"""Each kind, as it would appear in a param value."""

ORDINARY = [
    "0.001",
    "3e-4",
    "1e-05",
    "128",
    "True",
    "adamw",
    "[128, 64, 32]",
    "{'max_depth': 8, 'n_estimators': 300}",
    "/home/ada/data/train.csv",
    "s3://datasets/clicks/2024-06-01/part-0000.parquet",
    "data/Train2023/images/Batch01/shard00001",
    "models/ResNet50V2/checkpoints/epoch-0042",
    "https://github.com/acme/churn-model.git",
    "http://localhost:5000/api/2.0/mlflow",
    "mlp_classifier",
    "mlp_hidden_layers_128_64_32_relu_dropout_x",
    "bert-base-uncased",
    "meta-llama/Llama-2-7b-chat-hf",
    "resnet50_imagenet_pretrained_weights_v2",
    "pad_token=</s>",
    "runs:/0123456789abcdef0123456789abcdef/model",
    "sha256:" + "ab" * 32,
    "9fceb02d0ae598e95dc970b74767f19372d61af8",  # a git SHA: 40 characters, like AWS keys
    "9FCEB02D0AE598E95DC970B74767F19372D61AF8",
    str(uuid.UUID(int=0x1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF0)),
    uuid.UUID(int=0xFEDC_BA98_7654_3210_FEDC_BA98_7654_3210).hex,
    base64.b64encode(b"42").decode(),
    base64.b64encode(b"3.14159").decode(),
    base64.b64encode((123456789).to_bytes(8, "big")).decode(),
]


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_each_kind_is_found_and_masked(kind: str) -> None:
    value = SECRETS[kind]
    assert find_secrets(value) == [kind]
    masked = mask(value)
    assert f"[redacted:{kind}]" in masked
    assert find_secrets(masked) == []


def test_only_the_password_of_a_connection_string_is_masked() -> None:
    assert mask("postgresql://ml:hunter22@db:5432/x") == (
        "postgresql://ml:[redacted:url_password]@db:5432/x"
    )
    assert mask("?user=ml&password=hunter22&ssl=1") == "?user=ml&password=[redacted:password]&ssl=1"


@pytest.mark.parametrize("value", ORDINARY)
def test_ordinary_params_are_not_secrets(value: str) -> None:
    assert find_secrets(value) == []
    assert mask(value) == value


# -- the tracking service, through the embedded SDK ---------------------------------------------


@pytest.fixture
def sdk(tmp_path: Path) -> Iterator[Client]:
    c = Client(settings=load_settings(home=tmp_path / "refuse"))
    yield c
    c.close()


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_a_secret_is_refused_in_a_param_and_a_tag(sdk: Client, kind: str) -> None:
    run = sdk.create_run(sdk.get_or_create_experiment("scrub"))
    value = SECRETS[kind]
    for log in (sdk.log_param, sdk.set_tag):
        with pytest.raises(InvalidInput) as err:
            log(run.info.run_id, "db_url", value)
        assert "'db_url'" in str(err.value) and kind in str(err.value)
        assert value not in str(err.value)
    stored = sdk.get_run(run.info.run_id).data
    assert "db_url" not in stored.params and "db_url" not in stored.tags


def test_secrets_are_refused_in_run_and_experiment_tags(sdk: Client) -> None:
    eid = sdk.get_or_create_experiment("scrub-tags")
    with pytest.raises(InvalidInput, match="github_token"):
        sdk.create_run(eid, tags={"ci": SECRETS["github_token"]})
    with pytest.raises(InvalidInput, match="slack_token"):
        sdk.set_experiment_tag(eid, "hook", SECRETS["slack_token"])
    with pytest.raises(InvalidInput, match="jwt"):
        sdk.create_experiment("scrub-" + uuid.uuid4().hex[:6], tags={"auth": SECRETS["jwt"]})


def test_ordinary_params_and_tags_are_stored_as_given(sdk: Client) -> None:
    run = sdk.create_run(sdk.get_or_create_experiment("ordinary"))
    values = {f"p{i}": v for i, v in enumerate(ORDINARY)}
    sdk.log_params(run.info.run_id, values)
    sdk.set_tags(run.info.run_id, values)
    stored = sdk.get_run(run.info.run_id).data
    assert {k: stored.params[k] for k in values} == values
    assert {k: stored.tags[k] for k in values} == values


def test_the_mask_policy_stores_the_value_with_the_secret_replaced(tmp_path: Path) -> None:
    with Client(settings=load_settings(home=tmp_path, secrets_policy="mask")) as sdk:
        eid = sdk.get_or_create_experiment("masked")
        run_id = sdk.create_run(eid).info.run_id
        for kind, value in SECRETS.items():
            sdk.log_param(run_id, kind, value)
            sdk.set_tag(run_id, kind, value)
        sdk.set_experiment_tag(eid, "conn", SECRETS["url_password"])
        data = sdk.get_run(run_id).data
        assert data.params == {k: mask(v) for k, v in SECRETS.items()}
        assert all(data.tags[k] == mask(v) for k, v in SECRETS.items())
        assert data.params["url_password"].startswith("postgresql://ml:[redacted:url_password]@")
        assert sdk.get_experiment(eid).tags["conn"] == mask(SECRETS["url_password"])


def test_the_policy_setting_accepts_only_refuse_or_mask(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="SECRETS_POLICY"):
        load_settings(home=tmp_path, secrets_policy="ignore")


# -- the MLflow API, over HTTP -------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _mlflow_run(api: httpx.Client) -> str:
    name = f"scrub-{uuid.uuid4().hex[:10]}"
    eid = api.post(MLFLOW + "/experiments/create", json={"name": name}).json()["experiment_id"]
    body = {"experiment_id": eid, "start_time": 1}
    run_id: str = api.post(MLFLOW + "/runs/create", json=body).json()["run"]["info"]["run_id"]
    return run_id


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_the_mlflow_api_refuses_a_secret_param_and_tag(api: httpx.Client, kind: str) -> None:
    run_id = _mlflow_run(api)
    value = SECRETS[kind]
    for route in ("/runs/log-parameter", "/runs/set-tag"):
        resp = api.post(MLFLOW + route, json={"run_id": run_id, "key": "conn", "value": value})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert kind in resp.json()["message"] and value not in resp.text
    run = api.get(MLFLOW + "/runs/get", params={"run_id": run_id}).json()["run"]
    assert "params" not in run["data"] or all(p["key"] != "conn" for p in run["data"]["params"])


def test_the_mlflow_api_stores_ordinary_params(api: httpx.Client) -> None:
    run_id = _mlflow_run(api)
    params = [{"key": f"p{i}", "value": v} for i, v in enumerate(ORDINARY)]
    resp = api.post(MLFLOW + "/runs/log-batch", json={"run_id": run_id, "params": params})
    assert resp.status_code == 200, resp.text
    run = api.get(MLFLOW + "/runs/get", params={"run_id": run_id}).json()["run"]
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {
        p["key"]: p["value"] for p in params
    }


# -- logs and the token check --------------------------------------------------------------------


def test_the_log_filter_masks_messages_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("mlplane.test.scrub")
    secret_filter = SecretsLogFilter()
    logger.addFilter(secret_filter)
    token = SECRETS["mlplane_token"]
    try:
        with caplog.at_level(logging.INFO, logger="mlplane.test.scrub"):
            logger.info("connecting to %s", SECRETS["url_password"])
            logger.info("plain message %d", 3)
            try:
                raise RuntimeError(f"bad token {token}")
            except RuntimeError:
                logger.exception("request failed")
    finally:
        logger.removeFilter(secret_filter)
    assert token not in caplog.text and SECRETS["url_password"] not in caplog.text
    assert "[redacted:url_password]" in caplog.text
    assert "[redacted:mlplane_token]" in caplog.text
    assert "plain message 3" in caplog.text


def test_the_server_installs_the_filter_on_mlplanes_loggers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    svc = Services.from_settings(load_settings(home=tmp_path))
    try:
        create_app(svc.settings, svc)
        with caplog.at_level(logging.WARNING):
            logging.getLogger("mlplane.server").warning("reaper: %s", SECRETS["aws_access_key"])
        assert SECRETS["aws_access_key"] not in caplog.text
        assert "[redacted:aws_access_key]" in caplog.text
    finally:
        svc.close()


@pytest.mark.parametrize(
    "secret",
    [tokens.new_secret(), "mlp_" + "x" * 200, "not-a-token-" + _chars(20)],
    ids=["unknown", "too-long", "foreign"],
)
def test_the_token_check_never_echoes_the_token(services: Services, secret: str) -> None:
    with pytest.raises(Unauthenticated) as err:
        services.identities.authenticate(secret, source="127.0.0.1")
    assert secret not in str(err.value) and secret[4:20] not in str(err.value)
