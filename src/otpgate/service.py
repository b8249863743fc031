"""The application service: request, verify, cancel and inspect OTPs over the ports.

Input is validated by the pure parser of ``otpgate.core.intake``; the rules themselves
live in ``otpgate.core.lifecycle`` and run inside the store's atomic section. What happens
without a caller — expiry, purges, failing undeliverable codes — is ``housekeeping``.
Every call acts for one tenant (``default`` unless told): another tenant's OTP is
``NotFound``, and a recipient's limits are its tenant's alone. Security events go to
``audit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otpgate import housekeeping
from otpgate.audit import Audit
from otpgate.clock import Clock
from otpgate.core import codes, endings, ids, lifecycle, recipients, tenants
from otpgate.core.codes import CodeGenerator
from otpgate.core.endings import Unlocked
from otpgate.core.intake import OtpRequest, parse_purpose, parse_request
from otpgate.core.lifecycle import Minted, NewCode, Requested, Verdict
from otpgate.core.otp import Delivery, Otp, Status
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring, Sealed, seal_aad
from otpgate.errors import NotFound, RateLimited
from otpgate.routing import Router
from otpgate.store.base import Decide, Keep, Kept, Store

__all__ = ["OtpRequest", "OtpService", "VerifyAnswer"]

DEFAULT = tenants.DEFAULT


@dataclass(frozen=True, slots=True)
class VerifyAnswer:
    """``id`` is ``None`` where the answer must not name an OTP: by recipient, an answer
    that is not ``approved`` (it would tell a live code from none)."""

    id: str | None
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
    audit: Audit = field(default_factory=Audit)

    async def request(self, req: OtpRequest, *, tenant: str = DEFAULT) -> Requested:
        """Create, coalesce or resend the code for (``req.to``, ``req.purpose``)."""
        new, decide = self._request(req, tenant)
        try:
            return await self.store.transact(new.recipient_key, decide)
        except RateLimited as exc:
            self.audit.refused(exc.rule, tenant, new.to_masked)
            raise

    async def request_kept(self, req: OtpRequest, keep: Keep[Requested], *,
                           tenant: str = DEFAULT) -> Kept[Requested]:
        """``request`` under an idempotency slot: the answer is kept with the decision, or
        the answer kept earlier comes back and nothing is decided."""
        new, decide = self._request(req, tenant)
        try:
            return await self.store.transact_kept(new.recipient_key, decide, keep)
        except RateLimited as exc:
            self.audit.refused(exc.rule, tenant, new.to_masked)
            raise

    def _request(self, req: OtpRequest, tenant: str) -> tuple[NewCode, Decide[Requested]]:
        parsed = parse_request(req, self.policy, self.router.channels())
        rcpt = parsed.recipient
        drivers = {c: self.router.route(rcpt, c) for c in parsed.channels}
        code = self.codegen(parsed.code_length)
        keyring = self.keyring

        def mint(otp_id: str, send_no: int) -> Minted:
            sealed = keyring.seal(Sealed(to=rcpt.address, code=code), seal_aad(otp_id, send_no))
            return Minted(codes.digest(keyring.digest_key, otp_id, code), sealed)

        new = NewCode(
            recipient_key=rcpt.key(keyring.digest_key, tenant), to_masked=rcpt.masked,
            purpose=parsed.purpose, channels=parsed.channels, drivers=drivers,
            code_length=parsed.code_length, locale=parsed.locale, ttl=parsed.ttl,
            reference=parsed.reference, fresh_id=ids.new_otp_id(), mint=mint, tenant=tenant,
            app_hash=parsed.app_hash, webotp_domain=parsed.webotp_domain,
        )
        now, policy = self.clock.now(), self.policy
        return new, lambda s: lifecycle.decide_request(s, new, policy, now)

    async def verify(self, otp_id: str, code: str, *, tenant: str = DEFAULT) -> VerifyAnswer:
        """Check ``code`` against the OTP ``otp_id``; ``NotFound`` for an unknown id (or
        another tenant's)."""
        code = codes.check_submitted(code)
        otp = await self._get(otp_id, tenant)
        if otp.status is not Status.PENDING:
            self.audit.uncounted(tenant, "no-code")
            return VerifyAnswer(otp.id, False, otp.status)
        verdict = await self._verify(otp.recipient, lambda s: s.find(otp_id), code, None,
                                     tenant)
        if verdict.otp is None:  # it died between the read and the transaction
            otp = await self._get(otp_id, tenant)
            return VerifyAnswer(otp.id, False, otp.status)
        return VerifyAnswer(otp_id, verdict.valid, verdict.status,
                            None if verdict.valid else verdict.attempts_left)

    async def verify_recipient(
        self, to: str, purpose: str | None, code: str, country: str | None = None, *,
        tenant: str = DEFAULT,
    ) -> VerifyAnswer:
        """Check ``code`` against the pending code of (``to``, ``purpose``). With none
        pending the answer looks exactly like a wrong code's, so recipients cannot be
        enumerated; no answer but ``approved`` names an OTP."""
        rcpt = recipients.parse(to, country)
        purpose = parse_purpose(purpose)
        code = codes.check_submitted(code)
        key = rcpt.key(self.keyring.digest_key, tenant)
        verdict = await self._verify(key, lambda s: s.pending.get(purpose), code, purpose,
                                     tenant)
        if verdict.status is Status.APPROVED:
            return VerifyAnswer(verdict.otp_id, verdict.valid, verdict.status)
        return VerifyAnswer(None, False, verdict.status, verdict.attempts_left)

    async def _verify(self, key: str, find: lifecycle.Finder, code: str,
                      missing: str | None, tenant: str) -> Verdict:
        now = self.clock.now()
        policy, digest_key = self.policy, self.keyring.digest_key

        def check(otp_id: str, digest: bytes) -> bool:
            return codes.matches(digest_key, otp_id, code, digest)

        verdict = await self.store.transact(key, lambda s: lifecycle.decide_verify(
            s, key, find, check, policy, now, missing=missing))
        self._report(verdict, tenant, now)
        return verdict

    def _report(self, verdict: Verdict, tenant: str, now: float) -> None:
        otp, audit = verdict.otp, self.audit
        if verdict.counted and otp is not None:
            audit.wrong_answer(otp.id, tenant, verdict.attempts_left or 0)
            if verdict.locked_until is not None:
                audit.locked(otp.id, tenant, otp.to_masked, self.policy.lock_after,
                             verdict.locked_until)
        elif not verdict.valid and otp is None:
            audit.uncounted(tenant, "approved" if verdict.status is Status.APPROVED
                            else "no-code")

    async def unlock(self, to: str, country: str | None = None, *, tenant: str = DEFAULT,
                     by: str = "operator") -> tuple[str, Unlocked]:
        """End the recipient's lock and forget its consecutive failures; the masked
        recipient and what was undone."""
        rcpt = recipients.parse(to, country)
        now, policy = self.clock.now(), self.policy
        done = await self.store.transact(rcpt.key(self.keyring.digest_key, tenant),
                                         lambda s: endings.decide_unlock(s, now, policy))
        self.audit.unlocked(tenant, rcpt.masked, done.was_locked, done.failures, by)
        return rcpt.masked, done

    async def cancel(self, otp_id: str, *, tenant: str = DEFAULT) -> Otp:
        otp = await self._get(otp_id, tenant)
        if otp.status is Status.PENDING:
            now, policy = self.clock.now(), self.policy
            canceled = await self.store.transact(
                otp.recipient, lambda s: endings.decide_cancel(s, otp_id, now, policy))
            if canceled is not None:
                return canceled
            otp = await self._get(otp_id, tenant)
        return otp

    async def status(self, otp_id: str, *, tenant: str = DEFAULT) -> tuple[Otp, list[Delivery]]:
        """The OTP (expired now if its time is up) and its latest send's ledger entries."""
        otp = await self._get(otp_id, tenant)
        if otp.status is Status.PENDING and not otp.is_live(self.clock.now()):
            await housekeeping.expire(self.store, otp.recipient, self.clock.now(),
                                      self.policy)
            otp = await self._get(otp_id, tenant)
        return otp, await self.store.deliveries(otp_id)

    async def _get(self, otp_id: str, tenant: str) -> Otp:
        if not isinstance(otp_id, str) or not ids.is_otp_id(otp_id):
            raise NotFound("no OTP with this id")
        otp = await self.store.get(otp_id)
        if otp is None or otp.tenant != tenant:
            raise NotFound("no OTP with this id")
        return otp
