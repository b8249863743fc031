"""The ASGI app: ``create_app(settings)``, and ``from_env`` for uvicorn's ``--factory``.

The lifespan opens the runtime (store, bus, drivers), starts the dispatchers and the
expiry sweeper, says which mode it runs in, and closes everything on shutdown. Kept lean
for throughput: no logging or compression middleware, no debug pages.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import HttpMethod, Litestar, Request, Response, Router, get, route
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import Guard

from otpgate import config, devmode, redact, urls
from otpgate.api import (
    ApiContext,
    auth,
    docs,
    edge,
    problems,
    routes_admin,
    routes_dev,
    routes_hooks,
    routes_ops,
    routes_otp,
    routes_receipts,
    routes_tokens,
    routes_twilio,
    routes_web,
)
from otpgate.api.schemas import (
    REQUEST_BODIES,
    DriverBreaker,
    FallbackIn,
    Health,
    NotReady,
    Ready,
    SubscriptionBacklog,
    document_rules,
)
from otpgate.clock import Clock, SystemClock
from otpgate.config import Settings
from otpgate.errors import OtpgateError
from otpgate.observe import metrics, tracing
from otpgate.observe.asgi import Observed
from otpgate.runtime import Runtime

log = logging.getLogger(__name__)

_OK = msgspec.json.encode(Health(status="ok"))
_STATE_KEY = "otpgate"


def create_app(settings: Settings, *, clock: Clock | None = None) -> Litestar:
    """The API over a runtime opened from ``settings`` when the app starts;
    ``ConfigurationError`` if dev mode would send for real or listen in public without
    being told to (``otpgate.devmode``)."""
    redact.install()
    warnings = devmode.check(settings)
    ctx = ApiContext(settings, clock or SystemClock())
    v1: list[HTTPRouteHandler] = [*routes_otp.handlers(ctx), *routes_admin.handlers(ctx)]
    root: list[HTTPRouteHandler] = [*_health(ctx), *routes_receipts.receipts_handlers(ctx),
                                    *routes_ops.handlers(ctx), *routes_web.pages(),
                                    *routes_tokens.handlers(ctx),
                                    *routes_twilio.handlers(ctx), *routes_hooks.handlers(ctx)]
    if settings.captures:
        v1.append(routes_dev.messages_handler(ctx))
    if settings.dev:
        # The page has no way to send an API key, so it exists only in keyless dev mode.
        root.append(routes_dev.inbox_handler(ctx))
        root.append(routes_web.inbox_events(ctx))
    guards = [_except_options(auth.dev_guard(ctx.authenticator) if settings.dev
                              else auth.guard(ctx.authenticator))]
    # Each path's OPTIONS handler comes first, so that Litestar adds none of its own.
    # The document says what this server asks for: a key, or (dev mode) nothing.
    security: list[dict[str, list[str]]] = [] if settings.dev else [{"apiKey": []}]
    api = Router("/v1", route_handlers=[*_options(v1), *v1], guards=guards,
                 security=security)
    app = Litestar(
        route_handlers=[api, *_options(root), *root, *routes_web.asset_routers()],
        state=State({_STATE_KEY: ctx}),
        lifespan=[_lifespan(ctx, warnings)],
        exception_handlers=routes_twilio.exception_handlers(problems.exception_handlers()),
        openapi_config=_openapi(settings),
        request_max_body_size=settings.server.max_body_bytes,
        logging_config=None,
        debug=False,
    )
    # request ids, metrics, spans and log context around everything, the edge's refusals too
    app.asgi_handler = Observed(edge.Edge(app.asgi_handler, settings))
    return app


def context_of(app: Litestar) -> ApiContext:
    """The ``ApiContext`` of an app ``create_app`` made (its runtime, once started)."""
    ctx = app.state[_STATE_KEY]
    if not isinstance(ctx, ApiContext):
        raise TypeError("this app was not made by otpgate.api.app.create_app")
    return ctx


def from_env() -> Litestar:
    """uvicorn factory: ``uvicorn otpgate.api.app:from_env --factory``."""
    return create_app(config.from_env())


def from_encoded(encoded: bytes) -> Litestar:
    """The app for settings ``Settings.encode`` made (``otpgate serve`` hands them to each
    server process this way, not through the environment)."""
    return create_app(config.Settings.decode(encoded))


def _except_options(guard: Guard) -> Guard:
    """``guard`` on every method but OPTIONS, which says what a path allows to anyone
    (a CORS preflight carries no key)."""

    async def unless_options(connection: ASGIConnection[Any, Any, Any, Any],
                             handler: BaseRouteHandler) -> None:
        if connection.scope.get("method") != "OPTIONS":
            await guard(connection, handler)  # type: ignore[misc]

    return unless_options


def _options(handlers: list[HTTPRouteHandler]) -> list[HTTPRouteHandler]:
    """An ``OPTIONS`` handler per path, whose ``Allow`` names every method of the path
    (Litestar's own lists only the methods of the first handler registered on it)."""
    methods: dict[str, set[str]] = {}
    for handler in handlers:
        for path in handler.paths:
            methods.setdefault(path, {"OPTIONS"}).update(handler.http_methods)
    return [_options_handler(path, allowed) for path, allowed in methods.items()]


def _options_handler(path: str, methods: set[str]) -> HTTPRouteHandler:
    allow = ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))

    @route(path, http_method=[HttpMethod.OPTIONS], include_in_schema=False,
           status_code=204)
    async def options() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": allow})

    return options


def _lifespan(ctx: ApiContext, warnings: list[str]) -> Any:
    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        stop_tracing = tracing.configure()
        try:
            runtime = await Runtime.open(ctx.settings, ctx.clock)
        except OtpgateError as exc:
            log.error("cannot start: %s", exc.detail)  # the reason, not just a traceback
            raise
        try:
            if not ctx.settings.server.api_only:
                await runtime.start_workers()
            ctx.attach(runtime)
            _announce(ctx.settings)
            for warning in warnings:
                log.warning("%s", warning)
            yield
        finally:
            ctx.attach(None)
            await runtime.close()
            metrics.process_gone()
            if stop_tracing is not None:
                stop_tracing()

    return lifespan


def _announce(settings: Settings) -> None:
    store = urls.mask(settings.store_url)
    if settings.dev:
        log.warning(
            "DEV MODE: requests need no API key and messages are captured, not sent (the "
            "capture driver only); dev inbox at http://%s:%d/dev/inbox (store %s)",
            settings.server.host, settings.server.port, store)
    else:
        log.info("otpgate API up: every /v1 request needs an API key (store %s)", store)
        if settings.captures:
            log.warning("the capture driver is allowed outside dev mode: "
                        "GET /v1/dev/messages shows message bodies to admin keys")


def _breakers(ctx: ApiContext) -> list[DriverBreaker]:
    """Every configured driver's breaker in this process (closed where never called)."""
    runtime = ctx.runtime
    views = {view.driver: view for view in runtime.breakers.views()}
    metrics.observe_breakers(list(views.values()), runtime.driver_urls)
    found = []
    for name in sorted(runtime.driver_urls):
        view = views.get(name)
        found.append(DriverBreaker(name, "closed") if view is None else DriverBreaker(
            name, view.state.value, view.calls, view.failures,
            view.open_until if view.state.value == "open" else None))
    return found


def _health(ctx: ApiContext) -> list[HTTPRouteHandler]:
    @get("/healthz", operation_id="health", summary="The process is up",
         responses={200: ResponseSpec(Health, description="Up", generate_examples=False)})
    async def healthz() -> Response[bytes]:
        return Response(_OK, media_type="application/json")

    @get("/readyz", operation_id="ready",
         summary="The store and the bus can be used and no send is late",
         description="Lists what waits per bus subscription. 503 (with Retry-After) when "
                     "the store or the bus cannot be used (the store must take writes), "
                     "or when a due send has waited longer than OTPGATE_READY_MAX_DUE_AGE.",
         responses={200: ResponseSpec(Ready, description="Ready", generate_examples=False),
                    503: ResponseSpec(NotReady, description="Not ready",
                                      media_type=problems.MEDIA_TYPE,
                                      generate_examples=False)})
    async def readyz() -> Response[bytes]:
        verdict = await ctx.readiness().check()
        waiting = [SubscriptionBacklog(b.subscription, b.depth, b.due, b.oldest_due_age)
                   for b in verdict.backlog]
        breakers = _breakers(ctx)
        if verdict.ready:
            return Response(msgspec.json.encode(Ready("ok", waiting, breakers)),
                            media_type="application/json")
        slug = verdict.slug or "not-ready"
        body = NotReady(type=problems.TYPE_BASE + slug, title=problems.title(slug),
                        status=503, detail=verdict.detail or "not ready",
                        retry_after=verdict.retry_after, subscriptions=waiting,
                        breakers=breakers)
        return Response(msgspec.json.encode(body), status_code=503,
                        media_type=problems.MEDIA_TYPE,
                        headers={"Retry-After": str(verdict.retry_after)})

    return [healthz, readyz]


class _OpenApiJson(JsonRenderPlugin):
    """``GET /openapi.json``, completed with the request bodies the handlers decode
    themselves (see ``schemas.REQUEST_BODIES``) and with the service's own rules for each
    value (``schemas.document_rules``); rendered once."""

    def __init__(self, rules: dict[str, dict[str, Any]]) -> None:
        # Mounted on a router at /openapi.json (see ``_openapi``): "/" is the document;
        # naming "/openapi.json" too keeps Litestar from adding an unpatched twin.
        super().__init__(path=["/", "/openapi.json"])
        self._rules = rules
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = msgspec.json.encode(docs.annotate(
                _with_rules(_with_bodies(openapi_schema), self._rules)))
        return self._rendered


def _with_rules(document: dict[str, Any], rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each request value's schema narrowed to what the service accepts (its pattern,
    lengths, bounds): body fields, query and path parameters and headers, by name."""
    bodies: list[type[msgspec.Struct]] = [*REQUEST_BODIES.values(), FallbackIn]
    for name in bodies:
        component = document["components"]["schemas"].get(name.__name__, {})
        for field, schema in component.get("properties", {}).items():
            _narrow(schema, rules.get(field))
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []) if isinstance(
                    operation, dict) else []:
                _narrow(parameter.get("schema", {}), rules.get(parameter.get("name")))
    return document


def _narrow(schema: dict[str, Any], rule: dict[str, Any] | None) -> None:
    """Add ``rule`` to ``schema``, or to its non-null branch (``str | None``)."""
    if rule is None:
        return
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key, []):
            if branch.get("type") not in (None, "null"):
                branch.update(rule)
                return
    schema.update(rule)


def _with_bodies(document: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    (_, extra) = msgspec.json.schema_components(
        list(REQUEST_BODIES.values()), ref_template="#/components/schemas/{name}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in extra.items():
        schemas.setdefault(name, schema)
    for (path, method), body in REQUEST_BODIES.items():
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
    return document


async def _html_404_to_problem(response: Response[Any]) -> Response[Any]:
    if response.status_code == 404:
        return problems.problem(404, "not-found", "no such resource")
    return response


def _openapi(settings: Settings) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="otpgate", version="1",
        description="One-time passcodes: request, dispatch over any provider, verify.",
        # Litestar's OpenAPI router also answers unknown paths below its own path with an
        # HTML page: rooting it at the document keeps that away from the API's paths, and
        # the hook turns what is left into the usual problem.
        openapi_router=Router("/openapi.json", route_handlers=[], include_in_schema=False,
                              after_request=_html_404_to_problem),
        render_plugins=[_OpenApiJson(document_rules(settings))],
        components=Components(security_schemes={"apiKey": SecurityScheme(
            type="http", scheme="bearer",
            description="og_<key id>_<secret>; not needed in dev mode")}),
    )
