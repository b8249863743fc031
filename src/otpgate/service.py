"""The application service: request, verify, cancel and inspect OTPs over the ports.

Input is validated by the pure parser of ``otpgate.core.intake``; the rules themselves
live in ``otpgate.core.lifecycle`` and run inside the store's atomic section. What happens
without a caller — expiry, purges, failing undeliverable codes — is ``housekeeping``.
Every call acts for one tenant (``default`` unless told): another tenant's OTP is
``NotFound``, and a recipient's limits are its tenant's alone. Security events go to
``audit``.

``deliver`` sends a code another service made (Supabase Auth, Ory Kratos), through the
same routes, failover and limits as otpgate's own. It makes an OTP record all the same —
the dispatcher, the send ledger, receipts, expiry and the send limits all hang on one —
but one that otpgate can never verify: it keeps no digest of the code a check could
match (only a digest of the message, in its own domain, to tell a retried hand-over from
a new one), and every answer to it counts nothing, as for a recipient with no code. The
service that made the code checks it; a second checker would only be a second way in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otpgate import housekeeping
from otpgate.abuse.guard import Guard, Requester
from otpgate.audit import Audit
from otpgate.clock import Clock
from otpgate.core import codes, endings, ids, lifecycle, recipients, tenants
from otpgate.core.codes import CodeGenerator
from otpgate.core.endings import Unlocked
from otpgate.core.intake import (
    DeliverRequest,
    OtpRequest,
    ParsedRequest,
    parse_delivery,
    parse_purpose,
    parse_request,
)
from otpgate.core.lifecycle import (
    Change,
    Minted,
    NewCode,
    Outcome,
    PlannedStep,
    Requested,
    Verdict,
)
from otpgate.core.otp import Delivery, Otp, RecipientState, Status
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring, Sealed, seal_aad
from otpgate.errors import Forbidden, InvalidRequest, NotFound, RateLimited, SealError
from otpgate.routing import Router
from otpgate.store.base import Decide, Keep, Kept, Store

__all__ = ["DeliverRequest", "OtpRequest", "OtpService", "Requester", "Standing",
           "VerifyAnswer"]

DEFAULT = tenants.DEFAULT


@dataclass(frozen=True, slots=True)
class VerifyAnswer:
    """``id`` is ``None`` where the answer must not name an OTP: by recipient, an answer
    that is not ``approved`` (it would tell a live code from none)."""

    id: str | None
    valid: bool
    status: Status
    attempts_left: int | None = None
    approved: Otp | None = field(default=None, compare=False)
    """The OTP this answer approved (a verification token is made of it); not part of
    the answer itself."""


@dataclass(frozen=True, slots=True)
class Standing:
    """A recipient's code for one purpose, as a surface that only server keys reach may
    tell it (Twilio Verify's 20404 and 60202), where otpgate's own API answers every case
    alike: the live code otpgate can verify, if any; else whether the last one died of
    wrong answers (or would have: a stand-in's attempts ran out)."""

    otp: Otp | None
    spent: bool = False


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
    guard: Guard | None = None
    """The abuse rules (``otpgate.abuse``); none without one."""

    async def request(self, req: OtpRequest, *, tenant: str = DEFAULT,
                      keep_address: bool = False, who: Requester | None = None) -> Requested:
        """Create, coalesce or resend the code for (``req.to``, ``req.purpose``); with
        ``keep_address`` the OTP keeps the address sealed (``address``). ``who`` is the
        caller as the abuse rules count it."""
        new, decide = await self._admitted(req, tenant, keep_address, who)
        try:
            done = await self._transact(new, decide, tenant)
        except RateLimited:
            await self._unsent(new)
            raise
        if done.outcome is Outcome.COALESCED:
            await self._unsent(new)
        return done

    async def request_kept(self, req: OtpRequest, keep: Keep[Requested], *,
                           tenant: str = DEFAULT,
                           who: Requester | None = None) -> Kept[Requested]:
        """``request`` under an idempotency slot: the answer is kept with the decision, or
        the answer kept earlier comes back and nothing is decided."""
        new, decide = await self._admitted(req, tenant, False, who)
        try:
            kept = await self.store.transact_kept(new.recipient_key, decide, keep)
        except RateLimited as exc:
            self.audit.refused(exc.rule, tenant, new.to_masked)
            await self._unsent(new)
            raise
        if kept.result is None or kept.result.outcome is Outcome.COALESCED:
            await self._unsent(new)
        return kept

    async def _unsent(self, new: NewCode) -> None:
        """The request sent nothing after all: the pumping guard takes its send back."""
        if self.guard is not None and new.prefix_key:
            await self.guard.unsent(new.prefix_key, self.clock.now())

    async def deliver(self, req: DeliverRequest, *, tenant: str = DEFAULT) -> Requested:
        """Send a code (or a whole message) another service made, under the send limits of
        (``req.to``, ``req.purpose``): the very message handed over again while it is
        pending is coalesced, any other goes out at once as a resend of the pending OTP
        (see the module docstring for the record this makes). The abuse rules apply but
        the pumping guard — otpgate never sees these codes verified."""
        parsed = parse_delivery(req, self.policy, self.router.channels())
        rcpt, keyring = parsed.recipient, self.keyring
        watched = [] if self.guard is None else await self.guard.admit(
            rcpt, (parsed.channel,), parsed.purpose, tenant, Requester(), self.clock.now(),
            pumping=False)
        drivers = {parsed.channel: self.router.route(rcpt, parsed.channel)}
        sealed = Sealed(to=rcpt.address, code=parsed.code, body=parsed.body,
                        subject=parsed.subject)

        def mint(otp_id: str, send_no: int) -> Minted:
            return Minted(keyring.delivery_digest(otp_id, parsed.material),
                          keyring.seal(sealed, seal_aad(otp_id, send_no)))

        new = NewCode(
            recipient_key=rcpt.key(keyring.digest_key, tenant), to_masked=rcpt.masked,
            purpose=parsed.purpose, channels=(parsed.channel,), drivers=drivers,
            code_length=len(parsed.code), locale=parsed.locale, ttl=parsed.ttl,
            reference=None, fresh_id=ids.new_otp_id(), mint=mint, tenant=tenant,
            external=True)
        now, policy = self.clock.now(), self.policy

        def decide(state: RecipientState | None) -> Change[Requested]:
            change = lifecycle.decide_request(state, new, policy, now)
            change.events.extend(watched)
            return change

        return await self._transact(new, decide, tenant)

    async def _transact(self, new: NewCode, decide: Decide[Requested],
                        tenant: str) -> Requested:
        try:
            return await self.store.transact(new.recipient_key, decide)
        except RateLimited as exc:
            self.audit.refused(exc.rule, tenant, new.to_masked)
            raise

    async def _admitted(self, req: OtpRequest, tenant: str, keep_address: bool,
                        who: Requester | None) -> tuple[NewCode, Decide[Requested]]:
        """The request, parsed and past the abuse rules (a test number passes them all);
        the would-blocks of rules in monitor mode ride with the decision's events."""
        parsed = parse_request(req, self.policy, self.router.channels())
        guard = self.guard
        if guard is None:
            return self._request(parsed, tenant, keep_address)
        test_code = guard.test_numbers.code_for(parsed.recipient.address)
        if test_code is not None:
            return self._request(parsed, tenant, keep_address, test_code=test_code)
        who = who or Requester()
        now = self.clock.now()
        elsewhere = [step for step in parsed.fallback
                     if step.recipient.address != parsed.recipient.address]
        if elsewhere and who.client:
            raise Forbidden("a client key may not send a fallback step to another "
                            "address (fallback[].to); use a server key")
        watched = await guard.admit(parsed.recipient, parsed.channels, parsed.purpose,
                                    tenant, who, now)
        for step in elsewhere:  # another address meets every rule its own request would
            watched += await guard.admit(step.recipient, [step.channel], parsed.purpose,
                                         tenant, who, now)
        new, decide = self._request(parsed, tenant, keep_address,
                                    prefix_key=guard.prefix_key(tenant, parsed.recipient))
        if not watched:
            return new, decide

        def decide_watched(state: RecipientState | None) -> Change[Requested]:
            change = decide(state)
            change.events.extend(watched)
            return change

        return new, decide_watched

    def _request(self, parsed: ParsedRequest, tenant: str, keep_address: bool, *,
                 test_code: str | None = None,
                 prefix_key: str = "") -> tuple[NewCode, Decide[Requested]]:
        rcpt = parsed.recipient
        drivers = {c: self.router.route(rcpt, c) for c in parsed.channels}
        code = test_code or parsed.custom_code or self.codegen(parsed.code_length)
        keyring = self.keyring

        def seal_address(otp_id: str) -> str:
            return keyring.seal(Sealed(to=rcpt.address, code=""), _address_aad(otp_id))

        steps = tuple(PlannedStep(step.channel, step.after, step.recipient.masked,
                                  self.router.route(step.recipient, step.channel))
                      for step in parsed.fallback)

        def mint(otp_id: str, send_no: int) -> Minted:
            aad = seal_aad(otp_id, send_no)
            sealed = keyring.seal(Sealed(to=rcpt.address, code=code), aad)
            return Minted(keyring.code_digest(otp_id, code), sealed, tuple(
                keyring.seal(Sealed(to=step.recipient.address, code=code), aad)
                for step in parsed.fallback))

        new = NewCode(
            recipient_key=rcpt.key(keyring.digest_key, tenant), to_masked=rcpt.masked,
            purpose=parsed.purpose, channels=parsed.channels, drivers=drivers,
            locale=parsed.locale, ttl=parsed.ttl,
            reference=parsed.reference, fresh_id=ids.new_otp_id(), mint=mint, tenant=tenant,
            app_hash=parsed.app_hash, webotp_domain=parsed.webotp_domain,
            brand=parsed.brand, seal_address=seal_address if keep_address else None,
            steps=steps, test=test_code is not None, prefix_key=prefix_key,
            code_length=len(code) if test_code is not None else parsed.code_length,
        )
        now, policy = self.clock.now(), self.policy
        return new, lambda s: lifecycle.decide_request(s, new, policy, now)

    def address(self, otp: Otp) -> str | None:
        """The whole address an OTP made with ``keep_address`` keeps sealed (``None`` for
        any other, or one sealed with another key)."""
        if not otp.address:
            return None
        try:
            return self.keyring.open(otp.address, _address_aad(otp.id)).to
        except SealError:
            return None

    async def verify(self, otp_id: str, code: str, *, tenant: str = DEFAULT,
                     who: Requester | None = None) -> VerifyAnswer:
        """Check ``code`` against the OTP ``otp_id``; ``NotFound`` for an unknown id (or
        another tenant's)."""
        code = codes.check_submitted(code)
        if self.guard is not None and who is not None:
            await self.guard.admit_verify(tenant, who, self.clock.now())
        otp = await self._get(otp_id, tenant)
        if otp.external:
            raise InvalidRequest("this OTP carries a code another service made: that "
                                 "service verifies it", "id")
        if otp.status is not Status.PENDING:
            self.audit.uncounted(tenant, "no-code")
            return VerifyAnswer(otp.id, False, otp.status)
        verdict = await self._verify(otp.recipient, lambda s: s.find(otp_id), code, None,
                                     tenant)
        if verdict.otp is None:  # it died between the read and the transaction
            otp = await self._get(otp_id, tenant)
            return VerifyAnswer(otp.id, False, otp.status)
        return VerifyAnswer(otp_id, verdict.valid, verdict.status,
                            None if verdict.valid else verdict.attempts_left,
                            approved=verdict.otp if verdict.valid else None)

    async def verify_recipient(
        self, to: str, purpose: str | None, code: str, country: str | None = None, *,
        tenant: str = DEFAULT, who: Requester | None = None,
    ) -> VerifyAnswer:
        """Check ``code`` against the pending code of (``to``, ``purpose``). With none
        pending the answer looks exactly like a wrong code's, so recipients cannot be
        enumerated; no answer but ``approved`` names an OTP."""
        rcpt = recipients.parse(to, country)
        purpose = parse_purpose(purpose)
        code = codes.check_submitted(code)
        guard = self.guard
        if guard is not None and who is not None \
                and guard.test_numbers.code_for(rcpt.address) is None:
            await guard.admit_verify(tenant, who, self.clock.now())
        key = rcpt.key(self.keyring.digest_key, tenant)
        verdict = await self._verify(key, lambda s: s.pending.get(purpose), code, purpose,
                                     tenant)
        if verdict.status is Status.APPROVED:
            return VerifyAnswer(verdict.otp_id, verdict.valid, verdict.status,
                                approved=verdict.otp if verdict.valid else None)
        return VerifyAnswer(None, False, verdict.status, verdict.attempts_left)

    async def _verify(self, key: str, find: lifecycle.Finder, code: str,
                      missing: str | None, tenant: str) -> Verdict:
        now = self.clock.now()
        policy, keyring = self.policy, self.keyring

        def check(otp_id: str, digest: bytes) -> bool:
            return keyring.code_matches(otp_id, code, digest)

        verdict = await self.store.transact(key, lambda s: lifecycle.decide_verify(
            s, key, find, check, policy, now, missing=missing))
        self._report(verdict, tenant, now)
        if verdict.valid and verdict.otp is not None and self.guard is not None:
            await self.guard.verified(tenant, verdict.otp.prefix_key, now)
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

    async def standing(self, to: str, purpose: str | None, country: str | None = None, *,
                       tenant: str = DEFAULT) -> Standing:
        """The recipient's live code for ``purpose`` (see ``Standing``); changes nothing."""
        rcpt = recipients.parse(to, country)
        purpose = parse_purpose(purpose)
        now, policy = self.clock.now(), self.policy

        def look(state: RecipientState | None) -> Change[Standing]:
            if state is None:
                return Change(result=Standing(None))
            otp = state.pending.get(purpose)
            if otp is not None and otp.is_live(now) and not otp.external \
                    and not state.locked(now):
                return Change(result=Standing(otp))
            tries = [t for t in state.phantoms.get(purpose, []) if now - t < policy.max_ttl]
            return Change(result=Standing(None, spent=len(tries) >= policy.max_attempts))

        return await self.store.transact(rcpt.key(self.keyring.digest_key, tenant), look)

    async def approve(self, otp_id: str, *, tenant: str = DEFAULT) -> Otp:
        """Approve a pending code without an answer (the app vouches for the user); a code
        no longer pending is returned as it is. Another service's code cannot be approved
        here (``InvalidRequest``)."""
        otp = await self._get(otp_id, tenant)
        if otp.external:
            raise InvalidRequest("this OTP carries a code another service made: that "
                                 "service verifies it", "id")
        if otp.status is Status.PENDING:
            now, policy = self.clock.now(), self.policy
            done = await self.store.transact(
                otp.recipient, lambda s: lifecycle.decide_approve(s, otp_id, now, policy))
            if done is not None:
                if self.guard is not None and done.status is Status.APPROVED:
                    await self.guard.verified(tenant, done.prefix_key, now)
                return done
            otp = await self._get(otp_id, tenant)
        return otp

    async def get(self, otp_id: str, *, tenant: str = DEFAULT) -> Otp:
        """The OTP ``otp_id`` of ``tenant`` as stored; ``NotFound`` otherwise."""
        return await self._get(otp_id, tenant)

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


def _address_aad(otp_id: str) -> str:
    return f"otpgate.address.v1|{otp_id}"
