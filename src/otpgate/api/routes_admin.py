"""``/v1/admin`` routes, for admin keys (``otpgate keys create --admin``) of a tenant, and
for keyless dev mode; any other key gets 403.

``POST /v1/admin/unlock`` ends a recipient's lock and forgets its consecutive wrong
answers, in the key's tenant — as ``otpgate unlock --to …`` does.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec

from otpgate.api import ApiContext, auth
from otpgate.api.problems import MEDIA_TYPE as PROBLEM
from otpgate.api.schemas import Problem, UnlockIn, UnlockOut, decode

_ENCODER = msgspec.json.Encoder()


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(Problem, description=description, media_type=PROBLEM,
                        generate_examples=False)


def handlers(ctx: ApiContext) -> list[HTTPRouteHandler]:
    """The admin route handlers, bound to ``ctx`` (mounted under ``/v1``)."""

    @post("/admin/unlock", status_code=200, operation_id="unlockRecipient",
          summary="Unlock a recipient (admin keys)",
          responses={200: ResponseSpec(UnlockOut, description="Unlocked (or it was not "
                                       "locked); its consecutive wrong answers forgotten",
                                       generate_examples=False),
                     400: _problem("The body is not JSON"),
                     401: _problem("Missing, unknown or revoked API key"),
                     403: _problem("The key is not an admin key"),
                     422: _problem("A field is missing, unknown or invalid")})
    async def unlock(request: Request[Any, Any, Any]) -> Response[bytes]:
        who = auth.require_admin(auth.caller(request, ctx.settings.dev))
        data = decode(await request.body(), UnlockIn)
        by = "keyless dev mode" if who is auth.DEV_CALLER else f"api key {who.key_id}"
        masked, done = await ctx.runtime.service.unlock(data.to, data.country,
                                                        tenant=who.tenant, by=by)
        return Response(_ENCODER.encode(UnlockOut(masked, done.was_locked, done.failures)),
                        media_type="application/json")

    return [unlock]
