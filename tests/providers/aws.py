"""AWS for the driver tests, on loopback only: moto in server mode (a separate process on
a free port, reached by the AWS SDK over real HTTP, fake credentials), and what the
stand-ins of ``stand_in.py`` need to speak an AWS protocol where moto cannot: the SigV4
check as AWS makes it (recomputed with botocore's own signer) and error answers in each
protocol's shape."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.providers.stand_in import Call, Reply

ACCESS_KEY, SECRET_KEY, REGION = "AKIDOTPGATETEST", "otpgate-test-secret", "us-east-1"
"""Fake credentials: moto takes any; the stand-ins check signatures made with these."""


class MotoServer:
    """``python -m moto.server`` on a free loopback port, for the whole test session."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
            env={**os.environ, "MOTO_RECORDER_FILEPATH": str(folder / "recording")})
        deadline = time.monotonic() + 30
        while True:  # bounded polling for a real process to come up
            try:
                self._get("/moto-api/data.json")
                return
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.05)

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=5) as answer:
            body: bytes = answer.read()
            return body

    def _post(self, path: str, body: bytes = b"") -> None:
        request = urllib.request.Request(self.url + path, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5):
            return

    def reset(self) -> None:
        """Forget every resource, and record the requests that follow afresh."""
        self._post("/moto-api/reset")
        self._post("/moto-api/recorder/reset-recording")
        self._post("/moto-api/recorder/start-recording")

    def models(self, service: str, model: str) -> list[dict[str, Any]]:
        """What moto keeps of ``service``'s ``model`` (its ``/moto-api/data.json``)."""
        data = json.loads(self._get("/moto-api/data.json"))
        found: list[dict[str, Any]] = data.get(service, {}).get(model, [])
        return found

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """The AWS requests moto's recorder kept since ``reset``, bodies decoded."""
        lines = self._get("/moto-api/recorder/download-recording").decode().splitlines()
        found = []
        for line in filter(None, lines):
            entry = json.loads(line)
            if "/moto-api/" in entry["url"]:
                continue
            if entry.get("body_encoded") and entry.get("body"):
                entry["body"] = base64.b64decode(entry["body"]).decode()
            if path is None or entry["url"].endswith(path):
                found.append(entry)
        return found

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def signed_by_us(call: Call, service: str, region: str = REGION) -> bool:
    """Whether ``call`` carries a valid SigV4 signature with the test credentials, for
    ``service`` in ``region``: recomputed with botocore's signer over the headers the
    request says it signed, at the time it says it was signed."""
    scheme, _, fields = call.headers.get("authorization", "").partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        return False
    parts = dict(p.strip().split("=", 1) for p in fields.split(","))
    date = call.headers.get("x-amz-date", "")
    if parts.get("Credential") != f"{ACCESS_KEY}/{date[:8]}/{region}/{service}/aws4_request":
        return False
    signed = parts.get("SignedHeaders", "").split(";")
    request = AWSRequest(method=call.method, url=f"http://{call.headers['host']}{call.path}",
                         data=call.body, headers={h: call.headers[h] for h in signed})
    request.context["timestamp"] = date
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), service, region)
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    return signer.signature(string_to_sign, request) == parts.get("Signature")


def json_error(status: int, code: str, message: str, **members: str) -> Reply:
    """An error as AWS JSON 1.0 / REST-JSON services answer it."""
    return Reply.json(status, {"__type": code, "message": message, **members},
                      {"x-amzn-ErrorType": code, "x-amzn-RequestId": "req-1"})


def query_error(status: int, code: str, message: str, service: str = "sns") -> Reply:
    """An error as AWS query-protocol services (SNS) answer it."""
    body = (f'<ErrorResponse xmlns="http://{service}.amazonaws.com/doc/2010-03-31/">'
            f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
            "</Error><RequestId>req-1</RequestId></ErrorResponse>")
    return Reply(status, body.encode(), {"Content-Type": "text/xml"})
