"""What a span records of the block it wraps: a failure's masked type and text, and no
failure at all for an event that is only not due yet."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otpgate.errors import Deferred, TemporaryDeliveryError
from otpgate.observe import tracing


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("otpgate"))
    monkeypatch.setattr(tracing, "_installed", [True])
    return exporter


def test_a_failure_marks_the_span_with_its_masked_text(spans: InMemorySpanExporter) -> None:
    with pytest.raises(TemporaryDeliveryError), \
            tracing.span("sms process", tracing.CONSUMER):
        raise TemporaryDeliveryError("503 from https://p.example/?To=%2B14155550123")
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    [event] = span.events
    assert "14155550123" not in str(event.attributes)


def test_an_event_not_due_yet_is_no_failure(spans: InMemorySpanExporter) -> None:
    with pytest.raises(Deferred), tracing.span("voice process", tracing.CONSUMER):
        raise Deferred("fallback step due in 30 s", 30.0)
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("deferred", {"otpgate.deferred_for": 30.0})]
