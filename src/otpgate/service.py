"""The application service: request, verify, cancel and inspect OTPs over the ports.

Input is validated by the pure parser of ``otpgate.core.intake``; the rules themselves
live in ``otpgate.core.lifecycle`` and run inside the store's atomic section. What happens
without a caller — expiry, purges, failing undeliverable codes — is ``housekeeping``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

from otpgate import housekeeping
from otpgate.clock import Clock
from otpgate.core import codes, endings, ids, lifecycle, recipients
from otpgate.core.codes import CodeGenerator
from otpgate.core.intake import OtpRequest, parse_purpose, parse_request
from otpgate.core.lifecycle import Minted, NewCode, Requested, Verdict
from otpgate.core.otp import Delivery, Otp, Status
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring, Sealed, seal_aad
from otpgate.errors import NotFound
from otpgate.routing import Router
from otpgate.store.base import Decide, Keep, Kept, Store

__all__ = ["OtpRequest", "OtpService", "VerifyAnswer"]


@dataclass(frozen=True, slots=True)
class VerifyAnswer:
    id: str
    valid: bool
    status: Status
    attempts_left: int | None = None


@dataclass(slots=True)
class OtpService:
    """Request, verify and cancel codes. Holds no state of its own."""

    store: Store
    clock: Clock
    keyring: Keyring
    policy: Policy
    router: Router
    codegen: CodeGenerator = field(default=codes.generate_code)

    async def request(self, req: OtpRequest) -> Requested:
        """Create, coalesce or resend the code for (``req.to``, ``req.purpose``)."""
        new, decide = self._request(req)
        return await self.store.transact(new.recipient_key, decide)

    async def request_kept(self, req: OtpRequest, keep: Keep[Requested]) -> Kept[Requested]:
        """``request`` under an idempotency slot: the answer is kept with the decision, or
        the answer kept earlier comes back and nothing is decided."""
        new, decide = self._request(req)
        return await self.store.transact_kept(new.recipient_key, decide, keep)

    def _request(self, req: OtpRequest) -> tuple[NewCode, Decide[Requested]]:
        parsed = parse_request(req, self.policy, self.router.channels())
        rcpt = parsed.recipient
        drivers = {c: self.router.route(rcpt, c) for c in parsed.channels}
        code = self.codegen(parsed.code_length)
        keyring = self.keyring

        def mint(otp_id: str, send_no: int) -> Minted:
            sealed = keyring.seal(Sealed(to=rcpt.address, code=code), seal_aad(otp_id, send_no))
            return Minted(codes.digest(keyring.digest_key, otp_id, code), sealed)

        new = NewCode(
            recipient_key=rcpt.key(keyring.digest_key), to_masked=rcpt.masked,
            purpose=parsed.purpose, channels=parsed.channels, drivers=drivers,
            code_length=parsed.code_length, locale=parsed.locale, ttl=parsed.ttl,
            reference=parsed.reference, fresh_id=ids.new_otp_id(), mint=mint,
            app_hash=parsed.app_hash, webotp_domain=parsed.webotp_domain,
        )
        now, policy = self.clock.now(), self.policy
        return new, lambda s: lifecycle.decide_request(s, new, policy, now)

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
        purpose = parse_purpose(purpose)
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
        """The OTP (expired now if its time is up) and its latest send's ledger entries."""
        otp = await self._get(otp_id)
        if otp.status is Status.PENDING and not otp.is_live(self.clock.now()):
            await housekeeping.expire(self.store, otp.recipient, self.clock.now(),
                                      self.policy)
            otp = await self._get(otp_id)
        return otp, await self.store.deliveries(otp_id)

    async def _get(self, otp_id: str) -> Otp:
        if not isinstance(otp_id, str) or not ids.is_otp_id(otp_id):
            raise NotFound("no OTP with this id")
        otp = await self.store.get(otp_id)
        if otp is None:
            raise NotFound("no OTP with this id")
        return otp
