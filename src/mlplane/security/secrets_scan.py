"""Values that look like credentials, found and masked before they are stored or logged.

Params, tags and log lines are read by everyone with access to a project, copied
into exports and kept forever; a token pasted into one of them is a leak. Each
kind is a compiled pattern, chosen to match the documented shape of a real
credential and not ordinary values (paths, git SHAs, UUIDs, model names): a
shape that ordinary values can share (an AWS secret key is any 40 base64
characters) also needs the randomness of a real one.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SecretsLogFilter", "find_secrets", "install_log_filter", "mask"]


@dataclass(frozen=True)
class _Kind:
    name: str
    pattern: re.Pattern[str]
    group: int = 0
    """The group that holds the secret (0: the whole match): only it is masked."""
    accept: Callable[[str], bool] | None = None
    """A second test on the secret, for shapes that ordinary values can share."""


def _mixed_case(secret: str) -> bool:
    # A random base64 secret has both cases with near certainty; names and paths
    # written in snake_case or lowercase do not.
    body = secret.split("_", 1)[-1]
    return any(c.isupper() for c in body) and any(c.islower() for c in body)


def _random(secret: str) -> bool:
    """Forty random base64 characters: all three character classes and a high entropy
    (about 4.7 bits per character, where paths and words stay under 4)."""
    counts = Counter(secret)
    entropy = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    classes = (str.isupper, str.islower, str.isdigit)
    return entropy >= 4.3 and all(any(f(c) for c in secret) for f in classes)


_B64 = "A-Za-z0-9_\\-"
_NOT_MASKED = r"(?!\[redacted:)"  # masking twice changes nothing
_KINDS: tuple[_Kind, ...] = (
    # The PEM block first: it can hold base64 lines that other kinds would match.
    _Kind(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*\Z)",
            re.DOTALL,
        ),
    ),
    _Kind(
        "mlplane_token",
        re.compile(rf"(?<![{_B64}])mlp_[{_B64}]{{43}}(?![{_B64}])"),
        accept=_mixed_case,
    ),
    _Kind("aws_access_key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")),
    _Kind(
        "aws_secret_key",
        re.compile(r"(?<![A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"),
        group=1,
        accept=_random,
    ),
    _Kind(
        "github_token",
        re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    _Kind("slack_token", re.compile(r"(?<![A-Za-z0-9])xox[baprs]-[A-Za-z0-9-]{10,}")),
    _Kind("stripe_key", re.compile(r"(?<![A-Za-z0-9])[sr]k_live_[A-Za-z0-9]{16,}")),
    _Kind("google_api_key", re.compile(rf"(?<![{_B64}])AIza[{_B64}]{{35}}(?![{_B64}])")),
    _Kind(
        "jwt",
        re.compile(rf"(?<![{_B64}])eyJ[{_B64}]{{8,}}\.eyJ[{_B64}]{{8,}}\.[{_B64}]+"),
    ),
    # The password of a URL's user info: ``scheme://user:PASSWORD@host``.
    _Kind(
        "url_password",
        re.compile(rf"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:{_NOT_MASKED}([^@\s/]+)@"),
        group=1,
    ),
    # ``password=…`` in a query string or a libpq/JDBC connection string.
    _Kind(
        "password",
        re.compile(
            r"(?i)(?<![A-Za-z0-9])[\w.\-]*?"
            r"(?:password|passwd|pwd|secret|api_?key|access_?token|auth_?token)"
            rf"\s*=\s*{_NOT_MASKED}(\"[^\"]+\"|'[^']+'|[^\s&;,\"']+)"
        ),
        group=1,
    ),
)


def _spans(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) of every secret, earlier kinds first."""
    taken: list[tuple[int, int, str]] = []
    for kind in _KINDS:
        for m in kind.pattern.finditer(text):
            start, end = m.span(kind.group)
            if kind.accept is not None and not kind.accept(m.group(kind.group)):
                continue
            if any(start < e and s < end for s, e, _ in taken):
                continue
            taken.append((start, end, kind.name))
    return sorted(taken)


def find_secrets(text: str) -> list[str]:
    """The kinds of secret found in ``text`` (each once, in order of appearance)."""
    if len(text) < 8:  # no kind is this short; most params are
        return []
    return list(dict.fromkeys(kind for _, _, kind in _spans(text)))


def mask(text: str) -> str:
    """``text`` with each secret replaced by ``[redacted:<kind>]``."""
    if len(text) < 8:
        return text
    out, last = [], 0
    for start, end, kind in _spans(text):
        out.append(text[last:start])
        out.append(f"[redacted:{kind}]")
        last = end
    out.append(text[last:])
    return "".join(out)


class SecretsLogFilter(logging.Filter):
    """Masks secrets in a record's message (and its formatted traceback) before any
    handler sees it; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logging module's to report
            return True
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True


def install_log_filter(prefixes: tuple[str, ...] = ("mlplane", "uvicorn")) -> SecretsLogFilter:
    """Put one :class:`SecretsLogFilter` on every logger under ``prefixes``.

    A logger's filters see only the records logged through that logger, not those
    propagated from its children, so the filter goes on each one that exists (every
    module has made its logger by the time the server is built). Idempotent.
    """
    logging.getLogger(prefixes[0])  # exists even if nothing logged through it yet
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in prefixes]
    found = next(
        (f for n in names for f in logging.getLogger(n).filters if isinstance(f, SecretsLogFilter)),
        None,
    )
    shared = found or SecretsLogFilter()
    for name in names:
        logger = logging.getLogger(name)
        if shared not in logger.filters:
            logger.addFilter(shared)
    return shared
