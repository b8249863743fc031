"""What the verification token costs an approval: ``python -m benchmarks.tokens``.

In one process, over the in-memory store: requests ``--codes`` codes (one recipient each,
with a known code), approves each through ``OtpService.verify`` and encodes its answer
twice — without the token and with it —, timing each step of each approval. Prints the
medians in microseconds, the token's share of an approval, and approvals per second each
way. (``make bench`` loads the HTTP server with wrong answers, which carry no token; this
measures the one path a token is signed on, apart from the HTTP stack's noise.)
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


async def measure(codes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = build({"store_url": "memory://", "dev": True, "data_dir": Path(data_dir),
                          "secret_key": SECRET, "sweep_interval": 3600.0})
        runtime = await Runtime.open(settings)
        try:
            service, tokens = runtime.service, runtime.tokens
            service.codegen = lambda length: CODE[:length]
            numbers, _ = recipient_numbers(0, codes)
            ids = [(await service.request(OtpRequest(to=n))).otp.id for n in numbers]
            verify, plain, signed = [], [], []
            for otp_id in ids:
                t0 = time.perf_counter_ns()
                answer = await service.verify(otp_id, CODE)
                t1 = time.perf_counter_ns()
                verify_body(answer, None, "default")
                t2 = time.perf_counter_ns()
                verify_body(answer, tokens, "default")
                t3 = time.perf_counter_ns()
                verify.append(t1 - t0)
                plain.append(t2 - t1)
                signed.append(t3 - t2)
        finally:
            await runtime.close()
    v, p, s = (statistics.median(x) / 1000 for x in (verify, plain, signed))
    return {"verify_us": round(v, 1), "encode_us_without_token": round(p, 1),
            "encode_us_with_token": round(s, 1), "token_cost_us": round(s - p, 1),
            "token_share_of_approval": round((s - p) / (v + s), 3),
            "approvals_per_s_without_token": round(1e6 / (v + p)),
            "approvals_per_s_with_token": round(1e6 / (v + s))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=5000, help="approvals to time")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.codes)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
