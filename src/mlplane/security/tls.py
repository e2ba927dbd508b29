"""The TLS certificate and key a server (``mlplane server``, ``mlplane serve``) listens with."""

from __future__ import annotations

import ssl
from pathlib import Path

from mlplane.errors import InvalidInput


def check_pair(cert: Path | str | None, key: Path | str | None) -> tuple[str, str] | None:
    """The certificate and key to serve HTTPS with, checked to load as a pair; None for
    plain HTTP.

    Raises:
        InvalidInput: One without the other, an unreadable file, or not a matching pair.
    """
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise InvalidInput(f"{given} needs {missing} too (MLPLANE_TLS_CERT, MLPLANE_TLS_KEY)")
    for what, path in (("certificate", Path(cert)), ("key", Path(key))):
        try:
            path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read the TLS {what} {path}: {exc.strerror}") from None
    try:
        # A passphrase callback that gives none: an encrypted key fails here rather than
        # prompting on the terminal of every worker.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            cert, key, password=lambda: b""
        )
    except ssl.SSLError as exc:
        raise InvalidInput(
            f"the TLS certificate {cert} and key {key} do not load as a pair (PEM, an "
            f"unencrypted key matching the certificate): {exc.reason or exc}"
        ) from None
    return str(cert), str(key)
