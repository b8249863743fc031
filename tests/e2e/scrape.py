"""Reading ``/metrics`` as Prometheus would, with prometheus-client's own text parser."""

from __future__ import annotations

import os
import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, api_key: str | None = None) -> tuple[str, Samples]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def promtool() -> str | None:
    """promtool's path; in CI its absence is a failure (``.ci/run`` installs it)."""
    found = shutil.which("promtool")
    if found is None and os.environ.get("CI"):
        pytest.fail("promtool is missing: .ci/run installs the Debian package prometheus")
    return found


def promtool_lint(text: str) -> str:
    """What ``promtool check metrics`` says about ``text`` ('' when it is clean)."""
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    done = subprocess.run([tool, "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=30, check=False)
    said = (done.stdout + done.stderr).decode()
    return said if done.returncode else said.strip()
