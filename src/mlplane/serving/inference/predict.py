"""The predict paths, as plain ASGI callables: what every request costs, kept small.

One request: read the body, authenticate (a cache hit), find the deployment, take the
routing in force and choose a version (sticky by header when the deployment says so),
parse and check the payload against that version's signature, queue it on the version's
batcher and await the answer, then write it with the request id (``X-Request-Id``) and the
version (``X-Mlplane-Version``). Counting is a few list appends; mirroring to a shadow and
capturing a payload happen only for sampled requests, and never delay the answer.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

from mlplane.errors import InvalidInput, MlplaneError, NotFound, PayloadTooLarge, Unavailable
from mlplane.serving.inference import protocols
from mlplane.serving.inference.auth import Authenticator, require_predict
from mlplane.serving.inference.hosting import Host, Hosted, Served, Version
from mlplane.serving.inference.responses import error_parts, send
from mlplane.serving.inference.shadow import Mirror

log = logging.getLogger("mlplane.serving.inference")

MAX_BODY_BYTES = 16 * 1024 * 1024
JSON = b"application/json"
INVOCATIONS, PLAIN, OIP = "invocations", "plain", "oip"


class Recent:
    """request id -> (version, prediction) of the last requests (two generations of at most
    ``size // 2`` entries each: O(1) per request, no per-entry eviction)."""

    def __init__(self, size: int = 100_000) -> None:
        self.half = max(1, size // 2)
        self.new: dict[str, tuple[int, Any]] = {}
        self.old: dict[str, tuple[int, Any]] = {}

    def put(self, rid: str, version: int, prediction: Any) -> None:
        new = self.new
        new[rid] = (version, prediction)
        if len(new) >= self.half:
            self.old, self.new = new, {}

    def get(self, rid: str) -> tuple[int, Any] | None:
        return self.new.get(rid) or self.old.get(rid)


class Predict:
    """The handlers of the predict routes; one per app."""

    def __init__(
        self, host: Host, auth: Authenticator, mirror: Mirror, capture: Any, recent: Recent
    ) -> None:
        self.host = host
        self.auth = auth
        self.mirror = mirror
        self.capture = capture
        self.recent = recent
        self._prefix = os.urandom(4).hex()
        self._counter = 0

    def request_id(self, headers: dict[bytes, bytes], version: Version) -> str:
        given = headers.get(b"x-request-id")
        if given:
            rid = given.decode("latin-1").strip()
            if 0 < len(rid) <= 100:
                return rid
        self._counter += 1
        return f"r{version.label}-{self._prefix}{self._counter & 0xFFFFFFFF:08x}"

    async def __call__(
        self, scope: Any, receive: Any, send_: Any, kind: str, name: str | None, number: str | None
    ) -> None:
        start = time.perf_counter()
        headers: dict[bytes, bytes] = dict(scope["headers"])
        version: Version | None = None
        rid: str | None = None
        try:
            principal = await self.auth.principal(scope, headers.get(b"authorization"))
            if name is not None:
                hosted = self.host.find(name, headers.get(b"x-mlplane-project"))
            else:
                chosen = headers.get(b"x-mlplane-deployment")
                hosted = (
                    self.host.find(chosen.decode("latin-1"), headers.get(b"x-mlplane-project"))
                    if chosen
                    else self.host.only_one()
                )
            d = hosted.deployment
            require_predict(principal, d.project, d.name)
            raw = await read_body(receive, headers)
            served = hosted.served or await self.host.cold_start(hosted)
            version = _version(served, number, d.name) if number else served.choose(headers)
            rid = self.request_id(headers, version)
            if kind == OIP:
                req = protocols.read_infer(raw, headers.get(b"inference-header-content-length"))
                protocols.check_outputs(req, version.outputs)
                body: Any = req
                data, rows = protocols.infer_data(version.reader, req)
            else:
                body = protocols.loads(raw)
                data, rows = protocols.read_predict(version.reader, body)
            hosted.last_request = time.monotonic()
            hosted.requests += 1
            future = version.submit(data, rows, version.live)
            if served.shadow is not None and served.shadow is not version:
                self.mirror.maybe(hosted, served, kind, body, start)
            try:
                out = await future
            except MlplaneError:
                raise
            except (ValueError, TypeError, KeyError) as exc:
                # The input passed the signature; the model itself refused it.
                raise InvalidInput(
                    f"the model could not predict on this input: {exc}"[:1000]
                ) from exc
            except TimeoutError as exc:
                raise Unavailable(str(exc)) from exc
            except Exception as exc:
                version.live.answered(_ms(start), rows, 500)
                log.error("deployment %s version %d failed: %r", d.name, version.number, exc)
                raise MlplaneError(
                    f"version {version.number} of deployment {d.name!r} failed to predict "
                    f"({type(exc).__name__})"
                ) from exc
            if kind == OIP:
                payload, head = protocols.encode_infer(
                    req, d.name, version.number, out, version.outputs, rid
                )
            elif kind == INVOCATIONS:
                payload = b'{"predictions":' + protocols.dumps(protocols.jsonable(out)) + b"}"
                head = None
            else:
                payload = protocols.dumps(
                    {
                        "predictions": protocols.jsonable(out),
                        "request_id": rid,
                        "version": version.number,
                    }
                )
                head = None
            latency = _ms(start)
            version.live.answered(latency, rows, 200)
            self.recent.put(rid, version.number, out)
            hosted.last_request_ms = int(time.time() * 1000)
            out_headers = [
                (b"content-type", JSON if head is None else b"application/octet-stream"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", rid.encode()),
                (b"x-mlplane-version", version.header),
            ]
            if head is not None:
                out_headers.append((b"inference-header-content-length", str(head).encode()))
            await send(send_, 200, payload, out_headers)
            cfg = d.config
            if (
                self.capture is not None
                and cfg.capture_percent
                and (random.random() * 100 < cfg.capture_percent)
            ):
                self._capture(hosted, version, rid, data, out, latency)
        except MlplaneError as exc:
            status, payload, extra = error_parts(exc, v2=kind == OIP)
            if version is not None and 400 <= status < 500:
                version.live.rejected += 1
            if rid is not None:
                extra.append((b"x-request-id", rid.encode()))
            await send(send_, status, payload, extra)
        except Exception:
            log.exception("unexpected error on %s", scope.get("path"))
            status, payload, extra = error_parts(None, v2=kind == OIP)
            await send(send_, status, payload, extra)

    def _capture(
        self, hosted: Hosted, version: Version, rid: str, data: Any, out: Any, latency: float
    ) -> None:
        try:
            from mlplane.serving.capture import CaptureRecord

            d = hosted.deployment
            record = CaptureRecord(
                request_id=rid,
                time_ms=int(time.time() * 1000),
                deployment=d.name,
                version=version.number,
                kind="live",
                latency_ms=latency,
                status=200,
                inputs=_records(version, data),
                outputs=_output_list(out),
                sensitive=tuple(d.config.sensitive),
            )
            self.capture.submit(d.deployment_id, record)
        except Exception:  # capture never fails a request
            log.exception("payload capture failed")


def _version(served: Served, number: str, name: str) -> Version:
    v = served.versions.get(int(number)) if number.isdigit() else None
    if v is None:
        known = ", ".join(str(n) for n in served.versions)
        raise NotFound(
            f"deployment {name!r} does not route to version {number!r}; it routes to {known}"
        )
    return v


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


async def read_body(receive: Any, headers: dict[bytes, bytes]) -> bytes:
    """The request body, refused (413) past :data:`MAX_BODY_BYTES`."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"the request body is {int(declared)} bytes; the limit is {MAX_BODY_BYTES}"
        )
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the request body exceeds the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _records(version: Version, data: Any) -> list[dict[str, Any]]:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return list(data.to_dict(orient="records"))
    names = version.reader.names
    if names:
        return [dict(zip(names, row, strict=False)) for row in data.tolist()]
    return [{"input": row} for row in data.tolist()]


def _output_list(out: Any) -> list[Any]:
    value = protocols.jsonable(out)
    return value.tolist() if hasattr(value, "tolist") else list(value)


__all__ = ["INVOCATIONS", "MAX_BODY_BYTES", "OIP", "PLAIN", "Predict", "Recent", "read_body"]
