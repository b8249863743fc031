"""``/v1/receipts/{driver}``: providers' delivery reports. Authenticated by the provider's
own signature (or a ``token`` in the callback URL), checked by the driver — not by an
otpgate key, so these routes sit outside the API-key guard.

The URL a signature covers is the one the provider called: ``OTPGATE_PUBLIC_URL`` with
this path and query (behind a proxy the request's own URL is not what was signed).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath

from otpgate.api import ApiContext
from otpgate.api.problems import MEDIA_TYPE as PROBLEM
from otpgate.api.schemas import Problem, ReceiptOut
from otpgate.drivers.base import ReceiptRequest

_ENCODER = msgspec.json.Encoder()


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(Problem, description=description, media_type=PROBLEM,
                        generate_examples=False)


def public_url(ctx: ApiContext, request: Request[Any, Any, Any]) -> str:
    """The URL the provider called, as it signed it."""
    base = ctx.settings.public_url
    if not base:
        return str(request.url)
    query = request.scope.get("query_string", b"").decode("latin-1")
    return base.rstrip("/") + request.url.path + (f"?{query}" if query else "")


_RESPONSES = {200: ResponseSpec(ReceiptOut, description="Taken (also for a message otpgate "
                                "does not know)", generate_examples=False),
              403: _problem("The provider's signature (or token) does not verify"),
              404: _problem("No driver of that name takes receipts"),
              422: _problem("Not a report shaped as this provider sends them")}


def receipts_handlers(ctx: ApiContext) -> list[HTTPRouteHandler]:
    """``POST`` (most providers) and ``GET`` (those that call back with a query)."""

    async def take(request: Request[Any, Any, Any], driver: str) -> Response[bytes]:
        callback = ReceiptRequest(
            method=request.method, url=public_url(ctx, request),
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query_params.items()),
            body=await request.body())
        moved = await ctx.runtime.receipts.take(driver, callback)
        return Response(_ENCODER.encode(ReceiptOut(received=True, moved=moved)),
                        media_type="application/json")

    @post("/v1/receipts/{driver:str}", status_code=200, operation_id="postReceipt",
          summary="A provider's delivery report", security=[], responses=_RESPONSES)
    async def post_receipt(request: Request[Any, Any, Any],
                           driver: FromPath[str]) -> Response[bytes]:
        return await take(request, driver)

    @get("/v1/receipts/{driver:str}", operation_id="getReceipt",
         summary="A provider's delivery report, sent as a query", security=[],
         responses=_RESPONSES)
    async def get_receipt(request: Request[Any, Any, Any],
                          driver: FromPath[str]) -> Response[bytes]:
        return await take(request, driver)

    return [post_receipt, get_receipt]
