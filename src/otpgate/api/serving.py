"""uvicorn with a graceful stop: what ``otpgate serve`` runs.

On SIGTERM (or Ctrl-C) the server first reads for a moment longer (``LINGER``), so that a
request a client had already sent — still in a socket buffer, or on a connection not yet
accepted — is taken rather than cut off; then it stops accepting, closes idle connections,
lets every request in flight finish (up to ``server.shutdown_grace`` seconds), and shuts
the app down, which lets the sends in flight finish (the bus drains for as long again).
The process then exits 0 — uvicorn would otherwise raise the signal again once it is done
and die of it.

With ``--workers`` > 1 uvicorn's supervisor runs each worker process its own way (the same
grace, without the linger); the supervisor exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from types import FrameType

import uvicorn

LINGER = 0.2
"""Seconds a stopping server keeps reading before it stops accepting."""
_SETTLE = 0.05


class GracefulServer(uvicorn.Server):
    """``uvicorn.Server`` that lingers before it stops accepting (see the module)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await asyncio.sleep(LINGER)
        for server in self.servers:
            server.close()  # stop accepting; uvicorn closes them again, harmlessly
        # Let the connections accepted last be read: uvicorn closes any with no request.
        await asyncio.sleep(_SETTLE)
        await super().shutdown(sockets)


def run(config: uvicorn.Config) -> int:
    """Serve until a signal stops the server; the exit status: 0, or 3 when it could not
    start.

    uvicorn restores the handlers it found and raises the stopping signal again once it is
    done: the SIGTERM handler it finds is this one, which ends the run quietly.
    """
    stopped: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)
        raise SystemExit(0)

    server = GracefulServer(config)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if server.started or stopped else 3
