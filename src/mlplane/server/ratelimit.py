"""Per-token rate limits: a token bucket per caller, answering 429 with ``Retry-After``.

The buckets live in the worker's memory, so with ``--workers N`` a caller may reach N
times the limit; the limit is there to keep one runaway client from starving the
others, not for billing. It runs inside authentication: only valid tokens get a
bucket, and a caller cannot mint fresh buckets with made-up tokens.
"""

from __future__ import annotations

import hashlib
import math
import time

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mlplane import errors
from mlplane.server.auth import OPEN_PATHS, credential
from mlplane.server.errors import domain_response

MAX_BUCKETS = 10_000
"""Past this many callers, buckets that have refilled (the same as new ones) are dropped."""


class TokenBuckets:
    """``burst`` requests at once, refilled at ``per_s`` a second, per key."""

    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: str, now: float) -> int:
        """Spend one token: 0 if there was one, else the whole seconds until there is."""
        tokens, when = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.per_s)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._prune(now)
            return 0
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / self.per_s))

    def _prune(self, now: float) -> None:
        full = [
            k for k, (t, w) in self._buckets.items() if t + (now - w) * self.per_s >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) > MAX_BUCKETS:
            # Only a flood of distinct callers gets here; forgetting them all is the
            # bounded-memory choice (each gets a fresh burst, no more).
            self._buckets.clear()


class RateLimitMiddleware:
    """Refuses a caller's request once its bucket is empty; health and metrics are free."""

    def __init__(self, app: ASGIApp, *, per_s: float, burst: int, by_token: bool) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_s, burst) if per_s > 0 else None
        # With auth = none the Authorization header means nothing: key by address, or
        # every made-up header would get a fresh bucket.
        self.by_token = by_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.buckets is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(self._key(scope), time.monotonic())
        if wait:
            await self._refusal(scope["path"], wait)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _key(self, scope: Scope) -> str:
        if self.by_token:
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            secret = credential(header.decode("latin-1")) if header is not None else None
            if secret:  # a digest, so the table holds no usable secrets
                return "token:" + hashlib.blake2b(secret.encode(), digest_size=16).hexdigest()
        client = scope.get("client")
        return "address:" + (client[0] if client else "unknown")

    def _refusal(self, path: str, wait: int) -> Response:
        assert self.buckets is not None
        exc = errors.RateLimited(
            f"too many requests: this server allows {self.buckets.per_s:g} a second per "
            f"token, in bursts of up to {self.buckets.burst}; retry in {wait} s",
            retry_after=wait,
        )
        # MLflow paths: REQUEST_LIMIT_EXCEEDED, which the stock client retries.
        return domain_response(path, exc)
