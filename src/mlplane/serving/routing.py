"""Traffic splitting between the model versions of one deployment.

A :class:`Router` picks a version per request: at random by weight, or, given
a key (a user or session id), sticky by weighted rendezvous hashing (HRW), so
one key gets one version in every worker process and after every restart.
HRW also moves as few keys as possible when a weight changes: raising a
version's weight only moves keys to it, lowering it only moves keys away from
it, and the other versions keep theirs.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from collections.abc import Sequence

from mlplane.errors import InvalidInput

_INT64 = 2**63
_BITS = 52  # (x + 0.5) / 2**52 is exact in a double and strictly inside (0, 1)


class Router:
    """A weighted choice of model version, random or sticky per key.

    Args:
        variants: ``(version, weight)`` pairs; weights are >= 0 on any scale
            (``90``/``10`` or ``0.9``/``0.1``) and at least one is > 0. A
            version with weight 0 never gets traffic.
        seed: Seed of the random picks (the sticky ones never depend on it).
        salt: Mixed into the sticky hash; give each deployment its own so the
            same users are not the canary of every deployment at once.

    Raises:
        InvalidInput: When a version repeats, is not an integer, or the weights
            are negative, not finite, or all zero.
    """

    def __init__(
        self,
        variants: Sequence[tuple[int, float]],
        *,
        seed: int | None = None,
        salt: str | bytes = b"",
    ) -> None:
        pairs = list(variants)
        if not pairs:
            raise InvalidInput("a router needs at least one (version, weight) pair")
        seen: set[int] = set()
        for pair in pairs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise InvalidInput(f"each variant must be a (version, weight) pair, got {pair!r}")
            version, weight = pair
            if isinstance(version, bool) or not isinstance(version, int):
                raise InvalidInput(f"version must be an integer, got {version!r}")
            if not -_INT64 <= version < _INT64:
                raise InvalidInput(f"version {version} is out of range")
            if version in seen:
                raise InvalidInput(f"version {version} is listed twice; give it one weight")
            seen.add(version)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise InvalidInput(f"weight of version {version} must be a number, got {weight!r}")
            if not math.isfinite(weight) or weight < 0:
                raise InvalidInput(
                    f"weight of version {version} must be a finite number >= 0, got {weight}"
                )
        self.weights: dict[int, float] = {int(v): float(w) for v, w in pairs}
        live = [(v, w) for v, w in self.weights.items() if w > 0]
        if not live:
            raise InvalidInput("at least one version needs a weight > 0")
        self._versions = [v for v, _ in live]
        self._cumulative = list(itertools.accumulate(w for _, w in live))
        self._total = self._cumulative[-1]
        # Per version: its hash prefix and weight, so choose() only hashes the key.
        self._salt = salt.encode() if isinstance(salt, str) else bytes(salt)
        self._hashers = [(v, w, self._hasher(v)) for v, w in live]
        self._rng = random.Random(seed)

    def _hasher(self, version: int) -> hashlib.blake2b:
        # Fixed-length prefix (version, salt length) so no two inputs concatenate alike.
        prefix = version.to_bytes(8, "big", signed=True) + len(self._salt).to_bytes(4, "big")
        return hashlib.blake2b(prefix + self._salt, digest_size=8)

    def share(self, version: int) -> float:
        """The fraction of traffic ``version`` gets (0 for unknown versions)."""
        return self.weights.get(version, 0.0) / self._total

    def choose(self, key: str | bytes | None = None) -> int:
        """The version for one request: random by weight, or sticky for ``key``."""
        if key is None:
            i = bisect.bisect_right(self._cumulative, self._rng.random() * self._total)
            return self._versions[min(i, len(self._versions) - 1)]
        data = key.encode() if isinstance(key, str) else bytes(key)
        best, best_score = self._versions[0], -math.inf
        for version, weight, base in self._hashers:
            h = base.copy()
            h.update(data)
            # A uniform in (0, 1), never 0 or 1, so the log is finite and negative.
            u = ((int.from_bytes(h.digest(), "big") >> (64 - _BITS)) + 0.5) / 2.0**_BITS
            # Weighted HRW: -w / ln(u) is largest for version v with probability w_v / total.
            score = -weight / math.log(u)
            if score > best_score:
                best, best_score = version, score
        return best

    def __repr__(self) -> str:
        return f"Router({sorted(self.weights.items())!r})"


def sample(percent: float, rng: random.Random | None = None) -> bool:
    """Whether to take this request for a ``percent`` share (shadow mirroring, capture).

    Args:
        percent: The share to take, 0 to 100; 0 never samples, 100 always does.
        rng: The random source; the module's by default.

    Raises:
        InvalidInput: When ``percent`` is outside 0..100.
    """
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise InvalidInput(f"percent must be a number, got {percent!r}")
    if not 0 <= percent <= 100:  # NaN fails too
        raise InvalidInput(f"percent must be between 0 and 100, got {percent!r}")
    if percent >= 100:
        return True
    return (rng or random).random() * 100 < percent


__all__ = ["Router", "sample"]
