"""``/v1`` routes for codes: request, verify (by id or by recipient), status and cancel.

Handlers read the raw body and decode it with msgspec (``schemas.decode``), call the
``OtpService`` for the caller's tenant (``auth.caller``) and encode the answer once; errors
become problems (``problems``). Another tenant's OTP id is 404 on every route.
``DELETE`` of a code that is no longer pending answers its status unchanged (200): the
caller wanted it dead, and it is.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter
from litestar.types import Guard

from otpgate import apikeys
from otpgate.api import ApiContext, auth, callers, idempotency
from otpgate.api.problems import MEDIA_TYPE as PROBLEM
from otpgate.api.schemas import (
    ChannelOut,
    CodeIn,
    DeliveryState,
    OtpAccepted,
    OtpIn,
    OtpStatusOut,
    Problem,
    VerifyIn,
    VerifyOut,
    decode,
    read_body,
)
from otpgate.clock import isoformat
from otpgate.core import tenants
from otpgate.core.intake import FallbackRequest
from otpgate.core.lifecycle import Requested
from otpgate.core.otp import Delivery, DeliveryStatus, Otp
from otpgate.service import OtpRequest, VerifyAnswer
from otpgate.tokens import Tokens

JSON = "application/json"
REPLAYED = "Idempotent-Replayed"
_ENCODER = msgspec.json.Encoder()
# In-flight sends are still "queued" to the outside world.
_PUBLIC_STATE: dict[DeliveryStatus, DeliveryState] = {
    DeliveryStatus.QUEUED: "queued", DeliveryStatus.SENDING: "queued",
    DeliveryStatus.SENT: "sent", DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.FAILED: "failed", DeliveryStatus.EXPIRED: "expired",
}


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(Problem, description=description, media_type=PROBLEM,
                        generate_examples=False)


_COMMON = {
    400: _problem("The body is not JSON (or the request is otherwise malformed)"),
    401: _problem("Missing, unknown or revoked API key (outside dev mode)"),
    403: _problem("The key lacks the route's scope (a client key may only request and "
                  "verify), or is used from a browser origin it is not bound to"),
    503: _problem("The store or the bus cannot be reached"),
}
_BODY = {413: _problem("The body is larger than the configured limit"),
         422: _problem("A field is missing, of the wrong type, unknown or invalid")}
_BY_ID = {404: _problem("No OTP with this id")}
_VERIFY_LIMIT = {429: _problem("Too many answers from the caller's address; see "
                               "Retry-After")}


def _json(body: bytes, status: int = 200) -> Response[bytes]:
    return Response(body, status_code=status, media_type=JSON)


def accepted_body(result: Requested) -> bytes:
    otp = result.otp
    return _ENCODER.encode(OtpAccepted(
        id=otp.id, status=otp.status, to=otp.to_masked, channels=otp.channels,
        expires_at=isoformat(otp.expires_at), resend_after=isoformat(otp.resend_after),
        send_count=otp.send_count, attempts_left=result.attempts_left))


def verify_body(answer: VerifyAnswer, tokens: Tokens | None = None,
                tenant: str = tenants.DEFAULT) -> bytes:
    """The answer's JSON; with ``tokens``, an approval carries its token."""
    token = None
    if tokens is not None and answer.approved is not None:
        otp = answer.approved
        token = tokens.issue(otp_id=otp.id, purpose=otp.purpose, recipient=otp.recipient,
                             tenant=tenant)
    return _ENCODER.encode(VerifyOut(id=answer.id, valid=answer.valid, status=answer.status,
                                     attempts_left=answer.attempts_left, token=token))


def status_body(otp: Otp, deliveries: list[Delivery]) -> bytes:
    """One entry per channel of the OTP, then one per fallback step; a channel (or step)
    not yet in the ledger is ``queued`` on the first driver of the chain chosen for it."""
    by_channel = {d.channel: d for d in deliveries}
    channels = []
    for channel in otp.channels:
        d = by_channel.get(channel)
        if d is None:
            driver = (otp.routes.get(channel) or ["unknown"])[0]
            channels.append(ChannelOut(channel, driver, "queued", 0, isoformat(otp.updated_at)))
        else:
            channels.append(ChannelOut(channel, d.driver, _PUBLIC_STATE[d.status], d.attempts,
                                       isoformat(d.updated_at)))
    for number, step in enumerate(otp.steps, 1):
        d = by_channel.get(step.channel)
        channels.append(ChannelOut(
            step.channel, step.driver if d is None else d.driver,
            "queued" if d is None else _PUBLIC_STATE[d.status], 0 if d is None else d.attempts,
            isoformat(otp.updated_at if d is None else d.updated_at), step=number, to=step.to,
            due_at=isoformat(step.due_at)))
    return _ENCODER.encode(OtpStatusOut(
        id=otp.id, status=otp.status, to=otp.to_masked, purpose=otp.purpose,
        channels=channels, send_count=otp.send_count, attempts_left=otp.attempts_left,
        expires_at=isoformat(otp.expires_at), created_at=isoformat(otp.created_at),
        reference=otp.reference))


def _otp_request(data: OtpIn) -> OtpRequest:
    return OtpRequest(to=data.to, channel=data.channel, channels=data.channels,
                      purpose=data.purpose, locale=data.locale, code_length=data.code_length,
                      ttl_seconds=data.ttl_seconds, reference=data.reference,
                      country=data.country, app_hash=data.app_hash,
                      webotp_domain=data.webotp_domain,
                      fallback=None if data.fallback is None else [
                          FallbackRequest(step.channel, step.after, step.to)
                          for step in data.fallback])


def handlers(ctx: ApiContext) -> list[HTTPRouteHandler]:
    """The route handlers, bound to ``ctx`` (mounted under ``/v1``)."""

    def needs(scope: str) -> Guard:
        return auth.scoped(scope, ctx.settings.dev)

    @post("/otp", status_code=202, operation_id="requestOtp", summary="Request a code",
          guards=[needs(apikeys.SEND)],
          responses={202: ResponseSpec(OtpAccepted, description="Accepted: created, "
                                       "coalesced with the pending code, or resent",
                                       generate_examples=False),
                     **_COMMON, **_BODY,
                     429: _problem("A send limit, lockout, rate rule, pumping block or "
                                   "spend budget (type and rule say which); see "
                                   "Retry-After")})
    async def request_otp(
        request: Request[Any, Any, Any],
        idempotency_key: Annotated[str | None, HeaderParameter(
            name=idempotency.HEADER, required=False,
            description="1-255 printable ASCII; the same key within 24 h replays the "
                        "first 202 answer")] = None,
    ) -> Response[bytes]:
        key = idempotency.parse_key(idempotency_key)
        data = decode(await read_body(request), OtpIn)
        service, who = ctx.runtime.service, auth.caller(request, ctx.settings.dev)
        asker = callers.requester(request, who, ctx.settings.abuse.trusted_proxies,
                                  data.client_ip, data.rate_keys)
        if key is None:
            return _json(accepted_body(await service.request(
                _otp_request(data), tenant=who.tenant, who=asker)), 202)
        print_ = idempotency.fingerprint(_ENCODER.encode(data))
        keep = idempotency.keeper(idempotency.slot(who.tenant, who.key_id, key), print_,
                                  ctx.clock.now(), accepted_body)
        kept = await service.request_kept(_otp_request(data), keep, tenant=who.tenant,
                                          who=asker)
        if not kept.replayed:
            return _json(kept.answer.body, 202)
        answer = idempotency.same_request(kept.answer, print_)
        return Response(answer.body, status_code=answer.status, media_type=JSON,
                        headers={REPLAYED: "true"})

    @post("/otp/{otp_id:str}/verify", status_code=200, operation_id="verifyOtp",
          guards=[needs(apikeys.VERIFY)],
          summary="Verify a code by OTP id",
          responses={200: ResponseSpec(VerifyOut, description="The verdict",
                                       generate_examples=False),
                     **_COMMON, **_BODY, **_BY_ID, **_VERIFY_LIMIT})
    async def verify_otp(request: Request[Any, Any, Any], otp_id: FromPath[str]) -> Response[bytes]:
        data = decode(await read_body(request), CodeIn)
        who = auth.caller(request, ctx.settings.dev)
        asker = callers.requester(request, who, ctx.settings.abuse.trusted_proxies,
                                  data.client_ip)
        answer = await ctx.runtime.service.verify(otp_id, data.code, tenant=who.tenant,
                                                  who=asker)
        return _json(verify_body(answer, ctx.runtime.tokens, who.tenant))

    @post("/verify", status_code=200, operation_id="verifyRecipient",
          guards=[needs(apikeys.VERIFY)],
          summary="Verify a code by recipient and purpose",
          responses={200: ResponseSpec(VerifyOut, description="The verdict; with no code "
                                       "pending it looks like a wrong code's, and only an "
                                       "approved answer carries the id",
                                       generate_examples=False),
                     **_COMMON, **_BODY, **_VERIFY_LIMIT})
    async def verify_recipient(request: Request[Any, Any, Any]) -> Response[bytes]:
        data = decode(await read_body(request), VerifyIn)
        who = auth.caller(request, ctx.settings.dev)
        answer = await ctx.runtime.service.verify_recipient(
            data.to, data.purpose, data.code, data.country, tenant=who.tenant,
            who=callers.requester(request, who, ctx.settings.abuse.trusted_proxies,
                                  data.client_ip))
        return _json(verify_body(answer, ctx.runtime.tokens, who.tenant))

    @get("/otp/{otp_id:str}", operation_id="getOtp", summary="Status of a code",
         guards=[needs(apikeys.READ)],
         responses={200: ResponseSpec(OtpStatusOut, description="The OTP and its channels",
                                      generate_examples=False), **_COMMON, **_BY_ID})
    async def otp_status(request: Request[Any, Any, Any],
                         otp_id: FromPath[str]) -> Response[bytes]:
        otp, deliveries = await ctx.runtime.service.status(
            otp_id, tenant=auth.caller(request, ctx.settings.dev).tenant)
        return _json(status_body(otp, deliveries))

    @delete("/otp/{otp_id:str}", status_code=200, operation_id="cancelOtp",
            guards=[needs(apikeys.CANCEL)],
            summary="Cancel a code",
            responses={200: ResponseSpec(OtpStatusOut, description="Canceled; a code that "
                                         "was no longer pending is answered unchanged",
                                         generate_examples=False), **_COMMON, **_BY_ID})
    async def cancel_otp(request: Request[Any, Any, Any],
                         otp_id: FromPath[str]) -> Response[bytes]:
        runtime = ctx.runtime
        otp = await runtime.service.cancel(
            otp_id, tenant=auth.caller(request, ctx.settings.dev).tenant)
        deliveries = await runtime.backend.store.deliveries(otp.id)
        return _json(status_body(otp, deliveries))

    return [request_otp, verify_otp, verify_recipient, otp_status, cancel_otp]
