"""``/v2``: Twilio Verify v2 over the ``OtpService`` (shapes in ``otpgate.compat.twilio``).

An app on Twilio's SDK changes its Verify base URL and credentials, nothing else:
``POST /v2/Services/{ServiceSid}/Verifications`` asks for a code, ``…/VerificationCheck``
checks one, ``GET|POST …/Verifications/{Sid}`` (a ``VE…`` sid, or the ``To`` value of a
pending verification) reads, cancels or approves one. Bodies are form-encoded; answers and
errors are Twilio's JSON, never problem+json (``exception_handlers`` routes every error
under ``/v2`` to Twilio's shape, the framework's own 404 and 405 included).

Credentials: HTTP Basic with an API key's id as user and its secret part (or the whole
key) as password, or the key as a bearer token; dev mode takes any. ``/v2`` is for server
keys, which already see every answer of their tenant, so it may say what otpgate's own
API keeps to itself: 20404 when no verification is pending, 60202 when the last one died
of wrong answers. A ServiceSid's settings come from ``otpgate.services``. Each
verification's address is kept sealed with it, because Twilio's resources show ``to``
whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.types import ExceptionHandlersMap

from otpgate import apikeys, services
from otpgate.api import ApiContext, auth
from otpgate.api.auth import Caller
from otpgate.api.schemas import read_body
from otpgate.compat import twilio
from otpgate.compat.twilio import Form, Shown, Sids
from otpgate.core import recipients
from otpgate.core.otp import Otp, Status
from otpgate.errors import (
    BusError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    OtpgateError,
    RateLimited,
    StoreError,
    Unauthorized,
)
from otpgate.service import OtpRequest, OtpService

log = logging.getLogger(__name__)

PREFIX = "/v2"
JSON = "application/json"
_BASE = "/v2/Services/{service_sid:str}"
_PARAMS = {"to": "To", "channel": "Channel", "channels": "Channel", "locale": "Locale",
           "code": "Code", "code_length": "CustomCode", "brand": "CustomFriendlyName",
           "app_hash": "AppHash"}
"""otpgate's field names → the Twilio parameters they came from."""
_MAX_PSD2 = 128


def _json(resource: dict[str, Any], status: int = 200) -> Response[bytes]:
    return Response(twilio.encode(resource), status_code=status, media_type=JSON)


def _error(status: int, code: int, message: str,
           headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(twilio.error_body(code, message, status), status_code=status,
                    media_type=JSON, headers=headers)


def _not_found(path: str) -> Response[bytes]:
    return _error(404, twilio.NOT_FOUND,
                  f"The requested resource {path.removeprefix(PREFIX)} was not found")


def _psd2(form: Form) -> tuple[str | None, str | None]:
    """``Amount`` and ``Payee`` (PSD2), echoed in the answer they came with."""
    values = []
    for name in ("Amount", "Payee"):
        value = form.get(name)
        if value is not None and (len(value) > _MAX_PSD2 or not value.isprintable()):
            raise InvalidRequest(f"{name} must be printable text of at most {_MAX_PSD2} "
                                 "characters", name)
        values.append(value)
    return values[0], values[1]


def handlers(ctx: ApiContext) -> list[HTTPRouteHandler]:
    """The ``/v2`` route handlers, bound to ``ctx``; ``ConfigurationError`` for a
    configured service the policy refuses."""
    registry = services.Registry.of(ctx.settings)
    made: list[Sids] = []

    def sids() -> Sids:
        if not made:
            made.append(Sids(ctx.runtime.keyring.digest_key))
        return made[0]

    async def who(request: Request[Any, Any, Any], scope: str) -> Caller:
        if ctx.settings.dev:  # any credentials: an app's Twilio SDK always sends its own
            return auth.DEV_CALLER
        key = await ctx.authenticator().check(request.headers.get("authorization"),
                                              basic=True)
        return auth.server_only(key, scope)

    def service_of(sid: str) -> services.Service:
        if not services.is_sid(sid):
            raise NotFound("no such service")
        return registry.get(sid)

    def shown(request: Request[Any, Any, Any], service: services.Service, caller: Caller,
              otp: Otp, to: str | None, psd2: tuple[str | None, str | None] = (None, None),
              ) -> Shown:
        sid = sids().verification(otp.id)
        base = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
        address = to or ctx.runtime.service.address(otp) or otp.to_masked
        return Shown(sid=sid, service_sid=service.sid, account_sid=sids().account(
            caller.tenant), to=address,
            url=f"{base}{PREFIX}/Services/{service.sid}/Verifications/{sid}",
            amount=psd2[0], payee=psd2[1])

    async def by_sid(sid: str, service: services.Service, caller: Caller) -> Otp:
        """The OTP of a ``VE`` sid within this service (expired now if its time is up);
        ``NotFound`` otherwise."""
        otp_id = sids().otp_id(sid)
        if otp_id is None:
            raise NotFound("no such verification")
        otp, _ = await ctx.runtime.service.status(otp_id, tenant=caller.tenant)
        if otp.purpose != service.purpose or otp.external:
            raise NotFound("no such verification")
        return otp

    async def resolve(sid_or_to: str, service: services.Service,
                      caller: Caller) -> tuple[Otp, str | None]:
        """A verification named by its sid, or by the ``To`` of a pending one."""
        if sid_or_to.startswith("VE"):
            return await by_sid(sid_or_to, service, caller), None
        try:
            to = recipients.parse(sid_or_to).address
        except InvalidRequest:
            raise NotFound("no such verification") from None
        standing = await ctx.runtime.service.standing(to, service.purpose,
                                                      tenant=caller.tenant)
        if standing.otp is None:
            raise NotFound("no pending verification for this recipient")
        return standing.otp, to

    @post(f"{_BASE}/Verifications", status_code=201, include_in_schema=False)
    async def create_verification(request: Request[Any, Any, Any],
                                  service_sid: FromPath[str]) -> Response[bytes]:
        caller = await who(request, apikeys.SEND)
        service = service_of(service_sid)
        form = Form(await read_body(request))
        to, channel = form.require("To"), twilio.channel_of(form.require("Channel"))
        psd2 = _psd2(form)
        custom = form.get("CustomCode")
        if custom is not None and not service.custom_code:
            raise InvalidRequest("this service takes no custom codes (custom_code = true in "
                                 "its settings allows them)", "CustomCode")
        asked = OtpRequest(
            to=to, channel=channel, purpose=service.purpose, locale=form.get("Locale"),
            code_length=service.code_length if custom is None else None,
            ttl_seconds=service.ttl, app_hash=form.get("AppHash"),
            brand=form.get("CustomFriendlyName") or service.brand, custom_code=custom)
        try:
            result = await ctx.runtime.service.request(asked, tenant=caller.tenant,
                                                       keep_address=True)
        except InvalidRequest as exc:
            if exc.field == "code":
                raise InvalidRequest(exc.detail, "CustomCode") from None
            raise
        address = recipients.parse(to).address
        return _json(twilio.verification(
            result.otp, shown(request, service, caller, result.otp, address, psd2), sids()),
            201)

    @post(f"{_BASE}/VerificationCheck", status_code=200, include_in_schema=False)
    async def check_verification(request: Request[Any, Any, Any],
                                 service_sid: FromPath[str]) -> Response[bytes]:
        caller = await who(request, apikeys.VERIFY)
        service = service_of(service_sid)
        form = Form(await read_body(request))
        code, psd2 = form.require("Code"), _psd2(form)
        sid, to = form.get("VerificationSid"), form.get("To")
        otp_service: OtpService = ctx.runtime.service
        if sid is not None:
            otp, address = await by_sid(sid, service, caller), None
        elif to is not None:
            address = recipients.parse(to).address
            standing = await otp_service.standing(address, service.purpose,
                                                  tenant=caller.tenant)
            if standing.otp is None:
                return _dead(request.url.path, Status.MAX_ATTEMPTS_REACHED
                             if standing.spent else Status.EXPIRED)
            otp = standing.otp
        else:
            raise InvalidRequest("To or VerificationSid is required", "To")
        if otp.status is not Status.PENDING:
            return _dead(request.url.path, otp.status)
        answer = await otp_service.verify(otp.id, code, tenant=caller.tenant)
        killed = answer.status is Status.MAX_ATTEMPTS_REACHED and answer.attempts_left == 0
        if not (answer.valid or answer.status is Status.PENDING or killed):
            return _dead(request.url.path, answer.status)
        return _json(twilio.verification_check(
            otp, shown(request, service, caller, otp, address, psd2), answer.status.value,
            ctx.clock.now()))

    @get(f"{_BASE}/Verifications/{{sid:str}}", include_in_schema=False)
    async def fetch_verification(request: Request[Any, Any, Any], service_sid: FromPath[str],
                                 sid: FromPath[str]) -> Response[bytes]:
        caller = await who(request, apikeys.READ)
        service = service_of(service_sid)
        otp, to = await resolve(sid, service, caller)
        return _json(twilio.verification(otp, shown(request, service, caller, otp, to),
                                         sids()))

    @post(f"{_BASE}/Verifications/{{sid:str}}", status_code=200, include_in_schema=False)
    async def update_verification(request: Request[Any, Any, Any],
                                  service_sid: FromPath[str],
                                  sid: FromPath[str]) -> Response[bytes]:
        caller = await who(request, apikeys.CANCEL)
        service = service_of(service_sid)
        form = Form(await read_body(request))
        wanted = form.require("Status")
        acts: dict[str, Callable[..., Any]] = {"canceled": ctx.runtime.service.cancel,
                                               "approved": ctx.runtime.service.approve}
        if wanted not in acts:
            raise InvalidRequest("Status must be canceled or approved", "Status")
        if wanted == "approved":  # approving without a code is a verification's power
            auth.require(caller, apikeys.VERIFY)
        otp, to = await resolve(sid, service, caller)
        if otp.status is not Status.PENDING:
            return _not_found(request.url.path)
        done: Otp = await acts[wanted](otp.id, tenant=caller.tenant)
        if done.status.value != wanted:  # it ended another way meanwhile
            return _not_found(request.url.path)
        return _json(twilio.verification(done, shown(request, service, caller, done, to),
                                         sids()))

    return [create_verification, check_verification, fetch_verification,
            update_verification]


def _dead(path: str, status: Status) -> Response[bytes]:
    """The answer to a check that meets no live code: Twilio's 60202 when it died of wrong
    answers, else 20404 (Twilio forgets a verification once it ends)."""
    if status is Status.MAX_ATTEMPTS_REACHED:
        return _error(429, twilio.MAX_CHECK_ATTEMPTS, "Max check attempts reached")
    return _not_found(path)


def twilio_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Any error under ``/v2``, as Twilio answers it."""
    path = request.url.path
    if isinstance(exc, Unauthorized):
        return _error(401, twilio.AUTHENTICATE, f"Authenticate: {exc.detail}",
                      {"WWW-Authenticate": 'Basic realm="otpgate"'})
    if isinstance(exc, Forbidden):
        return _error(403, 20403, exc.detail)
    if isinstance(exc, InvalidRequest | Conflict):
        field = exc.field if isinstance(exc, InvalidRequest) else None
        param = _PARAMS.get(field or "", field)
        return _error(400, twilio.INVALID_PARAMETER, f"Invalid parameter `{param}`: "
                      f"{exc.detail}" if param else f"Invalid parameter: {exc.detail}")
    if isinstance(exc, NotFound):
        return _not_found(path)
    if isinstance(exc, RateLimited):
        return _error(429, twilio.MAX_SEND_ATTEMPTS, "Max send attempts reached",
                      {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, StoreError | BusError):
        log.warning("dependency unavailable: %s", exc.detail)
        return _error(503, twilio.UNAVAILABLE, "Service unavailable", {"Retry-After": "1"})
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        status = exc.status_code
        if status == 404:
            return _not_found(path)
        if status == 405:
            return _error(405, twilio.METHOD_NOT_ALLOWED, "Method not allowed",
                          dict(exc.headers or {}))
        if status == 400:
            return _error(400, twilio.INVALID_PARAMETER, f"Invalid parameter: {exc.detail}")
        return _error(status, 20000 + status, str(exc.detail))
    if isinstance(exc, OtpgateError):
        log.error("unexpected %s: %s", type(exc).__name__, exc.detail)
    else:
        log.error("unhandled error on %s %s", request.method, path,
                  exc_info=(type(exc), exc, exc.__traceback__))
    return _error(500, twilio.INTERNAL, "Internal server error")


def exception_handlers(base: ExceptionHandlersMap) -> ExceptionHandlersMap:
    """``base`` for every path but ``/v2``'s, whose errors get Twilio's shape."""
    fallback = base[Exception]

    def on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        path = request.url.path
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return twilio_error(request, exc)
        return fallback(request, exc)

    return {**base, Exception: on_error}
