"""The watcher: keeps a worker's deployments in step with the database.

Every ``poll_s`` seconds it compares every deployment's generation with what the worker
serves (one cheap query, in a thread) and applies what changed: a new split, a shadow, a
changed setting or a new deployment loads in the background and is swapped in whole; a
deleted one disappears. The first pass is the start-up load: ``/v2/health/ready`` turns
ready when it ends. It also unloads the idle deployments that may scale to zero.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mlplane.serving.inference.hosting import Host

log = logging.getLogger("mlplane.serving.inference")
QUIET_S = 60.0
"""A failure that repeats is logged once per this many seconds."""


async def watch(host: Host, poll_s: float) -> None:
    """Run until cancelled; errors are logged, never fatal (the database may be away)."""
    last_logged = 0.0
    while True:
        try:
            await host.sync()
        except asyncio.CancelledError:
            raise
        except Exception:
            now = time.monotonic()
            if now - last_logged >= QUIET_S:
                log.exception("cannot read the deployments; retrying every %.1f s", poll_s)
                last_logged = now
            if not host.ready and not host.hosted:
                host.ready = True  # nothing to load: answer, and pick deployments up later
        host.scale_down()
        await asyncio.sleep(poll_s)
