"""The operator's routes: ``GET /metrics`` (Prometheus) and the dashboard's figures
(``GET /dashboard/data``). Open in dev mode; otherwise they need an admin key
(``otpgate keys create --admin``): 401 without a key, 403 with another key.
"""

from __future__ import annotations

import msgspec
from litestar import MediaType, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.types import Guard

from otpgate.api import ApiContext, auth
from otpgate.api.problems import MEDIA_TYPE as PROBLEM
from otpgate.api.schemas import Problem
from otpgate.observe import figures, metrics

NO_STORE = {"Cache-Control": "no-store"}
_ENCODER = msgspec.json.Encoder()


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(Problem, description=description, media_type=PROBLEM,
                        generate_examples=False)


_DENIED = {401: _problem("No admin key (outside dev mode)"),
           403: _problem("A key that is not an admin key")}


def guards(ctx: ApiContext) -> list[Guard]:
    return [] if ctx.settings.dev else [auth.admin_guard(ctx.authenticator)]


def security(ctx: ApiContext) -> list[dict[str, list[str]]]:
    """What the document says these routes ask for: an admin key, or (dev mode) nothing."""
    return [] if ctx.settings.dev else [{"apiKey": []}]


def handlers(ctx: ApiContext) -> list[HTTPRouteHandler]:
    def drivers() -> list[str]:
        return sorted(ctx.runtime.driver_urls)

    @get("/metrics", operation_id="metrics", summary="Prometheus metrics",
         description="The Prometheus text format; every family is named otpgate_… "
                     "(see the README for the list).",
         guards=guards(ctx), security=security(ctx),
         responses={200: ResponseSpec(str, description="Prometheus text format",
                                      media_type="text/plain", generate_examples=False),
                    **_DENIED})
    async def metrics_route() -> Response[bytes]:
        runtime = ctx.runtime
        await figures.refresh(runtime.backend.bus, runtime.breakers.views(), drivers())
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE,
                        headers=NO_STORE)

    @get("/dashboard/data", operation_id="dashboardData", summary="The dashboard's figures",
         guards=guards(ctx), security=security(ctx),
         responses={200: ResponseSpec(dict, description="Cumulative counters, queues, "
                                      "breakers", generate_examples=False), **_DENIED})
    async def dashboard_data() -> Response[bytes]:
        runtime = ctx.runtime
        views = runtime.breakers.views()
        backlog = await figures.refresh(runtime.backend.bus, views, drivers())
        body = figures.figures(backlog, views, drivers(), ctx.clock.now())
        return Response(_ENCODER.encode(body), media_type=MediaType.JSON, headers=NO_STORE)

    return [metrics_route, dashboard_data]
