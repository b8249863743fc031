"""The application service: request, verify, cancel and inspect OTPs over the ports.

Input is validated here (once, for the HTTP API and the CLI alike); the rules themselves
live in ``otpgate.core.lifecycle`` and run inside the store's atomic section.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from otpgate.clock import Clock
from otpgate.core import codes, endings, ids, lifecycle, recipients
from otpgate.core.codes import CodeGenerator
from otpgate.core.lifecycle import Minted, NewCode, Requested, Verdict
from otpgate.core.otp import Delivery, DeliveryStatus, Otp, Status
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring, Sealed, seal_aad
from otpgate.errors import InvalidRequest, NotFound
from otpgate.store.base import Keep, Store

_PURPOSE = re.compile(r"[a-z0-9_.-]{1,64}", re.ASCII)
_LOCALE = re.compile(r"[a-z]{2,3}(-[A-Z]{2})?", re.ASCII)
_REFERENCE = re.compile(r"[\x20-\x7e]{1,128}", re.ASCII)
PHONE_CHANNELS = frozenset({"sms", "voice", "whatsapp"})
EMAIL_CHANNELS = frozenset({"email"})


@dataclass(frozen=True, slots=True)
class OtpRequest:
    """A request for a code, as received (not yet validated)."""

    to: str
    channel: str | None = None
    channels: Sequence[str] | None = None
    purpose: str | None = None
    locale: str | None = None
    code_length: int | None = None
    ttl_seconds: int | None = None
    reference: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class VerifyAnswer:
    id: str
    valid: bool
    status: Status
    attempts_left: int | None = None


@dataclass(slots=True)
class Gateway:
    """Request, verify and cancel codes. Holds no state of its own."""

    store: Store
    clock: Clock
    keyring: Keyring
    policy: Policy
    routes: dict[str, tuple[str, ...]]
    """Driver chain per channel, e.g. ``{"sms": ("twilio", "vonage")}``."""
    codegen: CodeGenerator = field(default=codes.generate_code)

    async def request(self, req: OtpRequest, keep: Keep[Requested] | None = None) -> Requested:
        """Create, coalesce or resend the code for (``req.to``, ``req.purpose``); ``keep``
        remembers an idempotent answer in the same transaction."""
        rcpt = recipients.parse(req.to, req.country)
        channels = self._channels(rcpt, req)
        purpose = _purpose(req.purpose)
        length = self.policy.default_code_length if req.code_length is None else req.code_length
        codes.check_length(length)
        ttl = self.policy.ttl(req.ttl_seconds)
        locale = _locale(req.locale)
        reference = _reference(req.reference)
        code = self.codegen(length)
        keyring = self.keyring

        def mint(otp_id: str, send_no: int) -> Minted:
            sealed = keyring.seal(Sealed(to=rcpt.address, code=code), seal_aad(otp_id, send_no))
            return Minted(codes.digest(keyring.digest_key, otp_id, code), sealed)

        new = NewCode(
            recipient_key=rcpt.key(keyring.digest_key), to_masked=rcpt.masked, purpose=purpose,
            channels=channels, drivers={c: self.routes[c] for c in channels},
            code_length=length, locale=locale, ttl=ttl, reference=reference,
            fresh_id=ids.new_otp_id(), mint=mint,
        )
        now = self.clock.now()
        policy = self.policy
        return await self.store.transact(
            new.recipient_key, lambda s: lifecycle.decide_request(s, new, policy, now), keep)

    def _channels(self, rcpt: recipients.Recipient, req: OtpRequest) -> tuple[str, ...]:
        if req.channel is not None and req.channels is not None:
            raise InvalidRequest("give channel or channels, not both", "channels")
        if req.channels is not None and (
                isinstance(req.channels, str)
                or not all(isinstance(c, str) for c in req.channels)):
            raise InvalidRequest("channels must be a list of channel names", "channels")
        wanted = list(req.channels) if req.channels is not None else [
            req.channel if req.channel is not None else rcpt.default_channel()]
        if not wanted or len(wanted) > 4 or len(set(wanted)) != len(wanted):
            raise InvalidRequest("channels must list 1 to 4 distinct channels", "channels")
        fits = PHONE_CHANNELS if rcpt.kind is recipients.Kind.PHONE else EMAIL_CHANNELS
        for channel in wanted:
            if not isinstance(channel, str) or channel not in fits:
                raise InvalidRequest(
                    f"channel {channel!r} cannot reach a {rcpt.kind.value} recipient", "channel")
            if channel not in self.routes:
                raise InvalidRequest(f"no driver is configured for channel {channel!r}",
                                     "channel")
        return tuple(wanted)

    async def verify(self, otp_id: str, code: str) -> VerifyAnswer:
        """Check ``code`` against the OTP ``otp_id``; ``NotFound`` for an unknown id."""
        code = codes.check_submitted(code)
        otp = await self._get(otp_id)
        if otp.status is not Status.PENDING:
            return VerifyAnswer(otp.id, False, otp.status)
        verdict = await self._verify(otp.recipient, lambda s: s.find(otp_id), code, None)
        if verdict.otp is None:  # it died between the read and the transaction
            otp = await self._get(otp_id)
            return VerifyAnswer(otp.id, False, otp.status)
        return self._answer(verdict, otp_id)

    async def verify_recipient(
        self, to: str, purpose: str | None, code: str, country: str | None = None
    ) -> VerifyAnswer:
        """Check ``code`` against the pending code of (``to``, ``purpose``). With none
        pending the answer looks exactly like a wrong code's, so recipients cannot be
        enumerated."""
        rcpt = recipients.parse(to, country)
        purpose = _purpose(purpose)
        code = codes.check_submitted(code)
        key = rcpt.key(self.keyring.digest_key)
        verdict = await self._verify(key, lambda s: s.pending.get(purpose), code, purpose)
        return self._answer(verdict, self._phantom_id(key, purpose))

    async def _verify(self, key: str, find: lifecycle.Finder, code: str,
                      missing: str | None) -> Verdict:
        now = self.clock.now()
        policy, digest_key = self.policy, self.keyring.digest_key

        def check(otp: Otp) -> bool:
            return codes.matches(digest_key, otp.id, code, otp.digest)

        return await self.store.transact(key, lambda s: lifecycle.decide_verify(
            s, key, find, check, policy, now, missing=missing))

    @staticmethod
    def _answer(verdict: Verdict, fallback_id: str) -> VerifyAnswer:
        otp_id = verdict.otp.id if verdict.otp is not None else fallback_id
        if verdict.valid:
            return VerifyAnswer(otp_id, True, verdict.status)
        return VerifyAnswer(otp_id, False, verdict.status, verdict.attempts_left)

    def _phantom_id(self, key: str, purpose: str) -> str:
        """A stable id to answer with when no code is pending, shaped like a real one."""
        mac = hmac.new(self.keyring.digest_key, f"phantom\x00{key}\x00{purpose}".encode(),
                       hashlib.sha256).digest()
        # 16 bytes, encoded as ids.new_otp_id encodes its 16 random bytes.
        return "otp_" + base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")

    async def cancel(self, otp_id: str) -> Otp:
        otp = await self._get(otp_id)
        if otp.status is Status.PENDING:
            now, policy = self.clock.now(), self.policy
            canceled = await self.store.transact(
                otp.recipient, lambda s: endings.decide_cancel(s, otp_id, now, policy))
            if canceled is not None:
                return canceled
            otp = await self._get(otp_id)
        return otp

    async def status(self, otp_id: str) -> tuple[Otp, list[Delivery]]:
        otp = await self._get(otp_id)
        if otp.status is Status.PENDING and not otp.is_live(self.clock.now()):
            await self.expire(otp.recipient)
            otp = await self._get(otp_id)
        return otp, await self.store.deliveries(otp_id)

    async def fail_if_undeliverable(self, otp_id: str, send_no: int) -> bool:
        """Mark the OTP ``failed`` when every channel of its send ``send_no`` failed for
        good; True if it did."""
        otp = await self.store.get(otp_id)
        if otp is None or otp.status is not Status.PENDING or otp.send_count != send_no:
            return False
        failed = {d.channel for d in await self.store.deliveries(otp_id)
                  if d.send_no == send_no and d.status is DeliveryStatus.FAILED}
        if not set(otp.channels) <= failed:
            return False
        now, policy = self.clock.now(), self.policy
        return await self.store.transact(otp.recipient, lambda s: endings.decide_fail(
            s, otp_id, send_no, now, policy)) is not None

    async def expire(self, recipient_key: str) -> int:
        now, policy = self.clock.now(), self.policy
        return await self.store.transact(
            recipient_key, lambda s: endings.decide_expire(s, now, policy))

    async def expire_due(self, limit: int = 500) -> int:
        """Expire every code whose time is up (publishing ``expired`` events)."""
        total = 0
        for key in await self.store.due(self.clock.now(), limit):
            total += await self.expire(key)
        return total

    async def purge(self, retention: float) -> int:
        """Forget OTPs finished more than ``retention`` seconds ago, and recipients idle for
        longer than anything the policy remembers (codes, sends, failures)."""
        now, policy = self.clock.now(), self.policy
        horizon = max(policy.max_ttl, policy.send_window, policy.failure_window)
        return await self.store.purge(now - retention, now - horizon)

    async def _get(self, otp_id: str) -> Otp:
        if not isinstance(otp_id, str) or not ids.is_otp_id(otp_id):
            raise NotFound("no OTP with this id")
        otp = await self.store.get(otp_id)
        if otp is None:
            raise NotFound("no OTP with this id")
        return otp



def _purpose(value: str | None) -> str:
    if value is None:
        return "default"
    if not isinstance(value, str) or not _PURPOSE.fullmatch(value):
        raise InvalidRequest("purpose must match [a-z0-9_.-]{1,64}", "purpose")
    return value


def _locale(value: str | None) -> str:
    if value is None:
        return "en"
    if not isinstance(value, str) or not _LOCALE.fullmatch(value):
        raise InvalidRequest("locale must look like 'en' or 'pt-BR'", "locale")
    return value


def _reference(value: str | None) -> str | None:
    if value is not None and (not isinstance(value, str) or not _REFERENCE.fullmatch(value)):
        raise InvalidRequest("reference must be 1 to 128 printable ASCII characters",
                             "reference")
    return value
