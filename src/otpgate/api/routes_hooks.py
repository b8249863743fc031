"""``/hooks``: other services' delivery hooks — Supabase Auth's Send-SMS hook and Ory
Kratos' HTTP courier. Each hands otpgate a code (or a whole message) it made; otpgate
delivers it through its routes, failover and limits (``OtpService.deliver``) and never
verifies it.

* ``POST /hooks/supabase/send-sms``: authenticated by its Standard Webhooks signature
  under ``OTPGATE_SUPABASE_HOOK_SECRET`` (see ``otpgate.compat.supabase``), for the
  default tenant. A refusal of the recipient (a limit, an invalid number) is answered in
  Supabase's hook error form, which Supabase Auth passes on to its caller; a bad
  signature is a 401 problem. The answer comes once the message is queued, well within
  Supabase's 5 s.
* ``POST /hooks/kratos/courier``: authenticated by a server key, as a bearer token or as
  HTTP Basic (key id, secret), for that key's tenant; dev mode takes any. The body is
  what Kratos' default request template renders (``otpgate.compat.kratos``). Errors are
  problems; Kratos retries a message whose request failed.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from otpgate import apikeys
from otpgate.api import ApiContext, auth
from otpgate.api.schemas import read_body
from otpgate.compat import kratos, supabase
from otpgate.errors import InvalidRequest, RateLimited, Unauthorized
from otpgate.service import DeliverRequest

JSON = "application/json"
_ENCODER = msgspec.json.Encoder()


class _Queued(msgspec.Struct):
    id: str
    status: str


def handlers(ctx: ApiContext) -> list[HTTPRouteHandler]:
    """The hooks' route handlers, bound to ``ctx``; ``ConfigurationError`` for a malformed
    ``OTPGATE_SUPABASE_HOOK_SECRET``."""
    secret = ctx.settings.supabase_hook_secret
    keys = supabase.parse_secrets(secret) if secret else None

    @post("/hooks/supabase/send-sms", status_code=200, include_in_schema=False)
    async def supabase_send_sms(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await read_body(request)
        if keys is None:
            raise Unauthorized("this server takes no Supabase hook: set "
                               "OTPGATE_SUPABASE_HOOK_SECRET to the hook's secret")
        supabase.verify(keys, {k.lower(): v for k, v in request.headers.items()}, body,
                        ctx.clock.now())
        try:
            asked = supabase.parse(body)
            await ctx.runtime.service.deliver(DeliverRequest(
                to=asked.phone, code=asked.otp, channel="sms", purpose=asked.purpose))
        except RateLimited as exc:
            return Response(supabase.refusal(429, exc.detail), media_type=JSON)
        except InvalidRequest as exc:
            return Response(supabase.refusal(400, exc.detail), media_type=JSON)
        return Response(supabase.OK, media_type=JSON)

    @post("/hooks/kratos/courier", status_code=200, include_in_schema=False)
    async def kratos_courier(request: Request[Any, Any, Any]) -> Response[bytes]:
        tenant = auth.DEV_CALLER.tenant
        if not ctx.settings.dev:
            key = await ctx.authenticator().check(request.headers.get("authorization"),
                                                  basic=True)
            tenant = auth.server_only(key, apikeys.SEND).tenant
        message = kratos.parse(await read_body(request))
        result = await ctx.runtime.service.deliver(DeliverRequest(
            to=message.recipient, code=message.code, body=message.body,
            subject=message.subject, purpose=message.purpose), tenant=tenant)
        return Response(_ENCODER.encode(_Queued(result.otp.id, result.otp.status.value)),
                        media_type=JSON)

    return [supabase_send_sms, kratos_courier]
