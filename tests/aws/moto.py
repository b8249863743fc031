"""moto in server mode, on a free loopback port, for the AWS tests.

``python -m tests.aws.moto`` serves moto's own WSGI application (the one ``moto_server``
runs) and prints its port. Requests are served by threads but handled one at a time:
moto's threaded server runs DynamoDB transactions without isolation (it snapshots and
restores whole tables), while DynamoDB isolates them — a lock around each request gives
the same guarantee. ``endpoint()`` starts one server per test session, points the SDK at
it (``AWS_ENDPOINT_URL``) with fake credentials, and stops it at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

REGION = "us-east-1"
_server: list[tuple[subprocess.Popen[str], str]] = []


def available() -> str | None:
    """Why moto cannot run here, if it cannot."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        return f"moto[server] is not installed: {exc}"
    return None


def endpoint() -> str:
    """The URL of this session's moto server (started on first use)."""
    if not _server:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.aws.moto"], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"})
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("port "):
            process.kill()
            raise RuntimeError(f"moto did not start: {line!r}")
        url = f"http://127.0.0.1:{line.split()[1]}"
        _server.append((process, url))
        atexit.register(_stop)
        os.environ.update({
            "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        })
    return _server[0][1]


def _stop() -> None:
    for process, _ in _server:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
    _server.clear()


def _serialised(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    return serve


def main() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, _serialised(app), threaded=True,
                         request_handler=MotoRequestHandler)
    os.environ["MOTO_PORT"] = str(server.port)
    print(f"port {server.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
