"""What the verification token costs an approval: ``python -m benchmarks.tokens``.

In one process, over the in-memory store: requests ``--codes`` codes (one recipient each,
with a known code), then approves them one after another through ``OtpService.verify`` and
the answer's encoding — half with the token, half without — and times ``Tokens.issue``
alone. Prints microseconds per operation and approvals per second each way. (``make bench``
loads the HTTP server with wrong answers, which carry no token; this measures the one path
a token is signed on.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.loadgen import recipient_numbers
from otpgate.api.routes_otp import verify_body
from otpgate.config import build
from otpgate.runtime import Runtime
from otpgate.service import OtpRequest

SECRET = "VWcB8phfd2Ho-6rqn0IABFVAVe-Mv-aGOFNo6hGhkgY"  # random, benchmarks only
CODE = "482913"


async def measure(codes: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = build({"store_url": "memory://", "dev": True, "data_dir": Path(data_dir),
                          "secret_key": SECRET, "sweep_interval": 3600.0})
        runtime = await Runtime.open(settings)
        try:
            service, tokens = runtime.service, runtime.tokens
            service.codegen = lambda length: CODE[:length]
            numbers, _ = recipient_numbers(0, codes * 2 * rounds)
            ids = [(await service.request(OtpRequest(to=n))).otp.id for n in numbers]

            async def approvals(batch: list[str], signed: bool) -> float:
                start = time.perf_counter()
                for otp_id in batch:
                    answer = await service.verify(otp_id, CODE)
                    verify_body(answer, tokens if signed else None, "default")
                return (time.perf_counter() - start) / len(batch) * 1e6

            with_token, without = [], []
            for r in range(rounds):  # alternate, so that drift hits both alike
                chunk = ids[r * 2 * codes:(r + 1) * 2 * codes]
                without.append(await approvals(chunk[:codes], False))
                with_token.append(await approvals(chunk[codes:], True))
            start = time.perf_counter()
            for n in range(codes):
                tokens.issue(otp_id=f"otp_{n}", purpose="login", recipient="r" * 40,
                             tenant="default")
            issue = (time.perf_counter() - start) / codes * 1e6
        finally:
            await runtime.close()
    plain, signed = statistics.median(without), statistics.median(with_token)
    return {"approve_us_without_token": round(plain, 1),
            "approve_us_with_token": round(signed, 1),
            "token_cost_us": round(signed - plain, 1), "issue_us": round(issue, 1),
            "approvals_per_s_without_token": round(1e6 / plain),
            "approvals_per_s_with_token": round(1e6 / signed)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1000, help="approvals per batch")
    parser.add_argument("--rounds", type=int, default=5, help="batches each way")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.codes, args.rounds)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
