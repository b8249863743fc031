"""Cold start of the Lambda functions, measured against moto in server mode.

``python -m benchmarks.aws_cold_start`` provisions a deployment on a local moto server,
then, in fresh processes as Lambda would start them, times the import of each handler
module, its first invocation (the cold start: settings resolved from SSM and Secrets
Manager, clients and runtime built) and its second (warm). A bare ``python -c pass`` in
the same run is the baseline. Figures are milliseconds, the median of ``--runs`` starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

from tests.aws import moto
from tests.aws.backend import provisioned

_PROBE = r"""
import json, sys, time
started = time.perf_counter()
import importlib
module = importlib.import_module(sys.argv[1])
imported = time.perf_counter()
event = json.loads(sys.argv[2])
module.handler(event, None)
first = time.perf_counter()
module.handler(event, None)
second = time.perf_counter()
print(json.dumps({"import": imported - started, "first": first - imported,
                  "warm": second - first}))
"""


def deployment() -> dict[str, str]:
    import boto3

    name = f"cold-{uuid.uuid4().hex[:8]}"
    found = asyncio.run(provisioned(name, ("capture",)))
    ssm = boto3.client("ssm", endpoint_url=moto.endpoint(), region_name=moto.REGION)
    ssm.put_parameter(Name=f"/{name}/secret-key", Type="SecureString",
                      Value="6f74706761746520746573742073656372657420302031203220332034203521")
    ssm.put_parameter(Name=f"/{name}/drivers/sms", Type="SecureString", Value="capture://")
    return {**os.environ, "OTPGATE_STORE_URL": f"dynamodb://{name}?region={moto.REGION}",
            "OTPGATE_TOPIC_ARN": found["OTPGATE_TOPIC_ARN"],
            "OTPGATE_EVENTS_TOPIC_ARN": found["OTPGATE_EVENTS_TOPIC_ARN"],
            "OTPGATE_SECRET_KEY": f"ssm:/{name}/secret-key",
            "OTPGATE_DRIVERS_SMS": f"ssm:/{name}/drivers/sms",
            "OTPGATE_ALLOW_CAPTURE": "true", "OTPGATE_DRIVER": "capture",
            "OTPGATE_LOG_LEVEL": "warning"}


def probe(env: dict[str, str], module: str, event: dict[str, object]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _PROBE, module, json.dumps(event)],
                          env=env, capture_output=True, text=True, check=True, timeout=120)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    env = deployment()
    readyz = json.load(open("tests/events/apigw_v2_request.json"))  # noqa: SIM115
    readyz.update(rawPath="/readyz", body="")
    readyz["requestContext"]["http"].update(method="GET", path="/readyz")
    cases = {
        "otpgate.aws.api (GET /readyz)": ("otpgate.aws.api", readyz),
        "otpgate.aws.dispatch (empty batch)": ("otpgate.aws.dispatch", {"Records": []}),
        "otpgate.aws.sweep (schedule)": ("otpgate.aws.sweep",
                                         json.load(open("tests/events/eventbridge_schedule.json"))),  # noqa: SIM115
    }
    baseline = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - started)
    print(f"python -c pass: {statistics.median(baseline) * 1000:.0f} ms (baseline)")
    for label, (module, event) in cases.items():
        found = [probe(env, module, event) for _ in range(runs)]
        median = {k: statistics.median(f[k] for f in found) * 1000 for k in found[0]}
        print(f"{label}: import {median['import']:.0f} ms, first invocation "
              f"{median['first']:.0f} ms, warm invocation {median['warm']:.1f} ms")


if __name__ == "__main__":
    main()
