"""OpenTelemetry traces, configured from the standard ``OTEL_*`` variables.

Tracing is on when an exporter is asked for (``OTEL_TRACES_EXPORTER``, or an OTLP endpoint
in ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and the SDK is
not disabled (``OTEL_SDK_DISABLED``); the SDK reads the rest itself (service name, resource
attributes, sampler, batch delays, headers). OTLP goes over HTTP/protobuf by default, over
gRPC with ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` where its exporter is installed. It needs
``pip install 'otpgate[otel]'``; without tracing, spans cost a no-op call.

One OTP is one trace: the HTTP request's span is current while the store writes the
request's events, which carry it in the CloudEvents ``traceparent`` extension attribute
(``otpgate.observe.instrument``); the dispatcher's span continues it, and the provider
call's span is its child. Span attributes name ids, drivers, channels, routes and outcomes,
never a code or a full number.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otpgate.errors import ConfigurationError, Deferred
from otpgate.redact import scrub

log = logging.getLogger(__name__)

_W3C = TraceContextTextMapPropagator()
SERVER, CONSUMER, CLIENT = SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.CLIENT


def tracer() -> trace.Tracer:
    return trace.get_tracer("otpgate")


_installed = [False]
"""Whether ``configure`` installed a provider: OpenTelemetry's provider is process-wide,
and so is this mirror of it, read on every request without asking the API."""


def enabled() -> bool:
    """Whether this process exports traces (else every span is a no-op)."""
    return _installed[0]


def wanted(env: Mapping[str, str]) -> bool:
    """Whether ``env`` asks for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure(env: Mapping[str, str] | None = None) -> Callable[[], None] | None:
    """Install a tracer provider exporting as ``env`` (default: the process environment)
    says; return what flushes and stops it, or ``None`` when tracing is off or was set up
    already in this process."""
    env = os.environ if env is None else env
    if not wanted(env):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError("OTEL_* asks for traces: pip install 'otpgate[otel]'") from None
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        _installed[0] = True
        return None
    defaults = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "otpgate"}
    provider = TracerProvider(resource=Resource.create(defaults))
    provider.add_span_processor(BatchSpanProcessor(_exporter(env)))
    trace.set_tracer_provider(provider)
    _installed[0] = True
    log.info("exporting traces (OTEL_* settings)")
    return provider.shutdown


def _exporter(env: Mapping[str, str]) -> Any:
    kind = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ConfigurationError(f"OTEL_TRACES_EXPORTER={kind!r}: otpgate exports otlp, "
                                 "console or none")
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol == "grpc":
        try:
            grpc = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc."
                                           "trace_exporter")
        except ImportError:
            raise ConfigurationError("OTLP over gRPC: pip install "
                                     "opentelemetry-exporter-otlp-proto-grpc") from None
        return grpc.OTLPSpanExporter()
    if protocol != "http/protobuf":
        raise ConfigurationError(f"OTLP protocol {protocol!r}: use http/protobuf or grpc")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if one is being recorded."""
    if not enabled() or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def parent_of(traceparent: str | None) -> otel_context.Context | None:
    """The context a ``traceparent`` value continues (``None`` for none)."""
    return _W3C.extract({"traceparent": traceparent}) if traceparent else None


def incoming(headers: Mapping[str, str]) -> otel_context.Context:
    """The context an HTTP request's headers carry (the configured propagators')."""
    return propagate.extract(headers)


@contextmanager
def span(name: str, kind: SpanKind, parent: otel_context.Context | None = None,
         attributes: Mapping[str, str | int | float | bool] | None = None) -> Iterator[Span]:
    """A span made current for the block; an exception marks it failed — with its type and
    its masked text (``redact.scrub``: a provider's error may quote a number or a code),
    never the raw text or traceback — and is re-raised; a ``Deferred`` (an event not due
    yet) is no failure and leaves the span's status alone. Without a tracer provider it costs
    nothing (a span that records nothing)."""
    if not enabled():
        yield trace.INVALID_SPAN
        return
    with tracer().start_as_current_span(name, context=parent, kind=kind,
                                        attributes=attributes, record_exception=False,
                                        set_status_on_exception=False) as current:
        try:
            yield current
        except Deferred as exc:  # not due yet: no failure, the span says when it comes back
            current.add_event("deferred", {"otpgate.deferred_for": exc.wait})
            raise
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, scrub(type(exc).__name__)))
            current.add_event("exception", {"exception.type": type(exc).__name__,
                                            "exception.message": scrub(str(exc))[:500]})
            raise
