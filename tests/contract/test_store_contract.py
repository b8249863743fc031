"""The ``Store`` contract, run against every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from otpgate.backends import Backend
from otpgate.capture.base import CapturedMessage
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Change
from otpgate.core.otp import Delivery, DeliveryStatus, Otp, RecipientState, SendKey, Status
from otpgate.core.policy import Policy
from otpgate.core.receipts import ReceiptNews, decide_receipt
from otpgate.crypto import Keyring
from otpgate.errors import RateLimited
from otpgate.events import EventType, Filter
from otpgate.routing import StaticRouter
from otpgate.service import OtpRequest, OtpService
from otpgate.store.base import ApiKey, Claim, ClaimState, Decide, Keep, Remembered
from tests.contract.conftest import Recorder, event, make_otp, subscribe, with_pending

OTP = "otp_" + "a" * 22


async def test_a_change_writes_its_state_records_and_events_together(
    backend: Backend, clock: FrozenClock
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "all", Filter(), seen)
    otp = make_otp(OTP, "rcpt-1", clock.now())
    requested = event(EventType.REQUESTED, OTP, clock.now())

    def decide(state: RecipientState | None) -> Change[str]:
        assert state is None
        return Change("made", with_pending("rcpt-1", otp), [otp], [requested])

    assert await backend.store.transact("rcpt-1", decide) == "made"

    assert await backend.store.get(OTP) == otp
    found = await backend.store.transact("rcpt-1", lambda s: Change(s))
    assert found is not None and found.pending["login"] == otp
    assert await backend.bus.pump() == 1
    assert seen.ids == [requested.id]


async def test_a_decision_that_raises_writes_nothing_at_all(
    backend: Backend, clock: FrozenClock
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "all", Filter(), seen)
    otp = make_otp(OTP, "rcpt-1", clock.now())

    def decide(state: RecipientState | None) -> Change[None]:
        Change(None, with_pending("rcpt-1", otp), [otp], [event(EventType.REQUESTED, OTP, 0)])
        raise RateLimited("slow down", retry_after=7)

    with pytest.raises(RateLimited) as caught:
        await backend.store.transact("rcpt-1", decide)

    assert caught.value.retry_after == 7
    assert await backend.store.get(OTP) is None
    assert await backend.store.transact("rcpt-1", lambda s: Change(s)) is None
    assert await backend.bus.pump() == 0
    assert seen.seen == []


async def test_records_read_back_are_independent_copies(
    backend: Backend, clock: FrozenClock
) -> None:
    otp = make_otp(OTP, "rcpt-1", clock.now())
    await backend.store.transact("rcpt-1", lambda s: Change(None, None, [otp]))
    otp.failed_attempts = 4  # the caller's object is not the stored one

    first = await backend.store.get(OTP)
    assert first is not None and first.failed_attempts == 0
    first.status = Status.APPROVED
    again = await backend.store.get(OTP)
    assert again is not None and again.status is Status.PENDING


async def test_the_state_a_decision_mutates_is_not_kept_unless_returned(
    backend: Backend, clock: FrozenClock
) -> None:
    await backend.store.transact("k", lambda s: Change(None, RecipientState.empty("k")))

    def meddle(state: RecipientState | None) -> Change[None]:
        assert state is not None
        state.sent.append(clock.now())
        return Change(None)  # state=None: nothing changes

    await backend.store.transact("k", meddle)
    kept = await backend.store.transact("k", lambda s: Change(s))
    assert kept is not None and kept.sent == []


async def test_due_lists_recipients_with_expired_pending_codes_only(
    backend: Backend, clock: FrozenClock
) -> None:
    now = clock.now()
    records = [
        make_otp("otp_expired", "r-b", now - 400),
        make_otp("otp_exactly", "r-a", now - 300),
        make_otp("otp_live", "r-c", now),
        make_otp("otp_approved", "r-d", now - 400, status=Status.APPROVED),
        make_otp("otp_also", "r-b", now - 500, purpose="signup"),
    ]
    await backend.store.transact("x", lambda s: Change(None, None, records))

    assert await backend.store.due(now, 10) == ["r-a", "r-b"]
    assert await backend.store.due(now, 1) == ["r-a"]
    assert await backend.store.due(now - 301, 10) == []


async def test_a_send_is_claimed_then_busy_then_reclaimed_as_unknown_then_done(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()
    key = SendKey(OTP, 1, "sms")

    first = await store.claim(key, "twilio", now, lease=30)
    assert (first.state, first.attempts, first.unknown_before) == (ClaimState.CLAIMED, 1, False)
    busy = await store.claim(key, "twilio", now + 29, lease=30)
    assert (busy.state, busy.attempts) == (ClaimState.BUSY, 1)

    late = await store.claim(key, "twilio", now + 30, lease=30)
    assert (late.state, late.attempts, late.unknown_before) == (ClaimState.CLAIMED, 2, True)

    assert await store.settle(Delivery(
        otp_id=OTP, send_no=1, channel="sms", driver="twilio", status=DeliveryStatus.SENT,
        attempts=2, updated_at=now + 31, provider_id="SM1"), [], claimed=late.attempts)
    done = await store.claim(key, "twilio", now + 999, lease=30)
    assert (done.state, done.attempts) == (ClaimState.DONE, 2)


async def test_a_dispatcher_whose_lease_was_taken_over_cannot_overwrite_the_outcome(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()
    key = SendKey(OTP, 1, "sms")
    seen = Recorder()
    await subscribe(backend.bus, "failures", Filter(), seen)
    slow = await store.claim(key, "twilio", now, lease=30)
    fresh = await store.claim(key, "twilio", now + 31, lease=30)
    assert await store.settle(Delivery(
        otp_id=OTP, send_no=1, channel="sms", driver="twilio", status=DeliveryStatus.SENT,
        attempts=fresh.attempts, updated_at=now + 32, provider_id="SM2"), [],
        claimed=fresh.attempts)

    late_failure = event(EventType.DELIVERY_FAILED, OTP, now + 40)
    assert not await store.settle(Delivery(
        otp_id=OTP, send_no=1, channel="sms", driver="twilio", status=DeliveryStatus.FAILED,
        attempts=slow.attempts, updated_at=now + 40, error="late"), [late_failure],
        claimed=slow.attempts)

    otp = make_otp(OTP, "r", now)
    await store.transact("r", lambda s: Change(None, None, [otp]))
    [row] = await store.deliveries(OTP)
    assert (row.status, row.provider_id) == (DeliveryStatus.SENT, "SM2")
    assert await backend.bus.pump() == 0
    assert seen.ids == []


async def test_a_send_held_by_another_driver_is_done_for_this_one(
    backend: Backend, clock: FrozenClock
) -> None:
    key = SendKey(OTP, 1, "sms")
    await backend.store.claim(key, "twilio", clock.now(), lease=30)

    other = await backend.store.claim(key, "vonage", clock.now() + 60, lease=30)

    assert other.state is ClaimState.DONE


async def test_a_send_settled_back_to_queued_is_claimed_again_with_a_known_outcome(
    backend: Backend, clock: FrozenClock
) -> None:
    key, now = SendKey(OTP, 1, "sms"), clock.now()
    claim = await backend.store.claim(key, "twilio", now, lease=30)
    await backend.store.settle(Delivery(
        otp_id=OTP, send_no=1, channel="sms", driver="twilio", status=DeliveryStatus.QUEUED,
        attempts=1, updated_at=now + 1, error="TemporaryDeliveryError: 503"), [],
        claimed=claim.attempts)

    again = await backend.store.claim(key, "twilio", now + 2, lease=30)

    assert (again.state, again.attempts, again.unknown_before) == (ClaimState.CLAIMED, 2, False)


async def test_settling_a_send_publishes_its_events_with_it(
    backend: Backend, clock: FrozenClock
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "sent", Filter.of(type=EventType.SENT.value), seen)
    sent = event(EventType.SENT, OTP, clock.now())
    claim = await backend.store.claim(SendKey(OTP, 1, "sms"), "twilio", clock.now(), 30)
    await backend.store.settle(Delivery(
        otp_id=OTP, send_no=1, channel="sms", driver="twilio", status=DeliveryStatus.SENT,
        attempts=1, updated_at=clock.now()), [sent], claimed=claim.attempts)

    assert await backend.bus.pump() == 1
    assert seen.ids == [sent.id]


async def test_deliveries_show_the_latest_send_of_each_channel_only(
    backend: Backend, clock: FrozenClock
) -> None:
    now = clock.now()
    otp = make_otp(OTP, "r", now, send_count=2)
    await backend.store.transact("r", lambda s: Change(None, None, [otp]))
    for send_no, channel in [(1, "sms"), (2, "sms"), (2, "voice")]:
        claim = await backend.store.claim(SendKey(OTP, send_no, channel), "twilio", now,
                                               30)
        await backend.store.settle(Delivery(
            otp_id=OTP, send_no=send_no, channel=channel, driver="twilio",
            status=DeliveryStatus.SENT, attempts=1, updated_at=now + send_no,
            provider_id=f"id-{send_no}-{channel}"), [], claimed=claim.attempts)

    found = await backend.store.deliveries(OTP)

    assert [(d.send_no, d.channel, d.provider_id) for d in found] == [
        (2, "sms", "id-2-sms"), (2, "voice", "id-2-voice")]
    assert await backend.store.deliveries("otp_unknown") == []


async def test_a_kept_answer_is_recalled_until_it_expires_then_replaced(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()

    def keeping(answer: Remembered) -> Keep[None]:
        return Keep(slot="idem", ttl=60.0, answer=lambda _: answer)

    first = Remembered("fp-1", 202, b'{"id": 1}', now)
    assert await store.recall("idem", now) is None
    made = await store.transact_kept("r", lambda s: Change(None), keeping(first))
    assert (made.answer, made.replayed) == (first, False)
    clock.advance(1)
    second = Remembered("fp-2", 202, b'{"id": 2}', now + 1)
    replayed = await store.transact_kept("r", lambda s: Change(None), keeping(second))
    assert (replayed.answer, replayed.replayed) == (first, True)
    assert await store.recall("idem", now + 59) == first

    assert await store.recall("idem", now + 60) is None
    clock.advance(59)
    third = Remembered("fp-3", 202, b'{"id": 3}', now + 60)
    await store.transact_kept("r", lambda s: Change(None), keeping(third))
    assert await store.recall("idem", now + 61) == third


async def test_api_keys_are_stored_listed_and_revoked_once(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()
    older = ApiKey(id="0000aaaa", name="ci", secret_hash=b"\x01" * 32, created_at=now - 10)
    newer = ApiKey(id="0000bbbb", name="web", secret_hash=b"\x02" * 32, created_at=now)
    await store.put_api_key(newer)
    await store.put_api_key(older)

    assert await store.get_api_key("0000aaaa") == older
    assert await store.get_api_key("ffffffff") is None
    assert [k.id for k in await store.list_api_keys()] == ["0000aaaa", "0000bbbb"]

    assert await store.revoke_api_key("0000bbbb", now + 5) is True
    assert await store.revoke_api_key("0000bbbb", now + 6) is False
    assert await store.revoke_api_key("ffffffff", now + 6) is False
    revoked = await store.get_api_key("0000bbbb")
    assert revoked is not None and revoked.revoked_at == now + 5


async def test_a_client_key_with_scopes_origins_and_a_rotation_round_trips(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()
    key = ApiKey(id="0000cccc", name="app", secret_hash=b"\x03" * 32, created_at=now,
                 tenant="acme", kind="client", scopes=["otp:send", "otp:verify"],
                 origins=["https://app.example", "https://www.app.example"])
    await store.put_api_key(key)
    assert await store.get_api_key("0000cccc") == key

    rotated = ApiKey(id="0000cccc", name="app", secret_hash=b"\x04" * 32, created_at=now,
                     tenant="acme", kind="client", scopes=["otp:send", "otp:verify"],
                     origins=["https://app.example", "https://www.app.example"],
                     old_secret_hash=b"\x03" * 32, old_until=now + 3600)
    await store.put_api_key(rotated)
    assert await store.get_api_key("0000cccc") == rotated
    assert await store.list_api_keys() == [rotated]
    assert await store.revoke_api_key("0000cccc", now + 1) is True
    revoked = await store.get_api_key("0000cccc")
    assert revoked is not None and revoked.old_secret_hash == b"\x03" * 32
    plain = ApiKey(id="0000dddd", name="srv", secret_hash=b"\x05" * 32, created_at=now)
    await store.put_api_key(plain)
    got = await store.get_api_key("0000dddd")
    assert got is not None and (got.kind, got.scopes, got.origins) == ("server", None, [])


async def test_meta_is_swapped_only_from_what_is_kept(backend: Backend) -> None:
    store = backend.store
    assert await store.read_meta("code_keys") is None
    assert await store.swap_meta("code_keys", "x", "first") is False
    assert await store.swap_meta("code_keys", None, "first") is True
    assert await store.swap_meta("code_keys", None, "other") is False
    assert await store.read_meta("code_keys") == "first"
    assert await store.swap_meta("code_keys", "stale", "second") is False
    assert await store.swap_meta("code_keys", "first", "second") is True
    assert await store.read_meta("code_keys") == "second"
    assert await store.read_meta("elsewhere") is None
    # the key check is a fact of its own
    assert await store.keep_key_check("v1:abc") == "v1:abc"
    assert await store.read_meta("code_keys") == "second"


async def test_concurrent_meta_swaps_from_one_value_let_exactly_one_win(
    backend: Backend,
) -> None:
    store = backend.store
    assert await store.swap_meta("race", None, "0")
    won = await asyncio.gather(*(store.swap_meta("race", "0", str(n)) for n in range(1, 9)))
    assert sum(won) == 1
    assert await store.read_meta("race") == str(won.index(True) + 1)


async def test_fifty_concurrent_changes_to_one_recipient_lose_nothing(
    backend: Backend, clock: FrozenClock
) -> None:
    def bump(n: int) -> Decide[int]:
        def decide(state: RecipientState | None) -> Change[int]:
            state = state or RecipientState.empty("hot")
            state.sent = [*state.sent, float(n)]
            return Change(len(state.sent), state)
        return decide

    counts = await asyncio.gather(*(backend.store.transact("hot", bump(n)) for n in range(50)))

    assert sorted(counts) == list(range(1, 51))
    final = await backend.store.transact("hot", lambda s: Change(s))
    assert final is not None and sorted(final.sent) == [float(n) for n in range(50)]


async def test_of_fifty_concurrent_right_answers_exactly_one_is_approved(
    backend: Backend, clock: FrozenClock
) -> None:
    gateway = OtpService(backend.store, clock, Keyring.from_secret(b"s" * 32), Policy(),
                         StaticRouter({"sms": ("capture",)}), codegen=lambda n: "123456"[:n])
    requested = await gateway.request(OtpRequest(to="+14155550123"))
    otp_id = requested.otp.id

    answers = await asyncio.gather(*(gateway.verify(otp_id, "123456") for _ in range(50)))

    assert sum(a.valid for a in answers) == 1
    assert all(a.status is Status.APPROVED for a in answers)
    stored = await backend.store.get(otp_id)
    assert stored is not None and stored.status is Status.APPROVED


async def test_the_capture_sink_keeps_one_message_per_key_newest_first(
    backend: Backend, clock: FrozenClock
) -> None:
    sink = backend.capture

    def message(n: int, to: str) -> CapturedMessage:
        return CapturedMessage(id=f"m{n}", otp_id=OTP, to=to, channel="sms",
                               body=f"code {n}", sent_at=clock.now() + n)

    assert await sink.add(message(1, "+14155550123"), "k1") is True
    assert await sink.add(message(2, "+14155550999"), "k2") is True
    assert await sink.add(message(3, "+14155550123"), "k3") is True
    assert await sink.add(message(4, "+14155550123"), "k1") is False

    assert [m.id for m in await sink.list()] == ["m3", "m2", "m1"]
    assert [m.id for m in await sink.list("+14155550123")] == ["m3", "m1"]
    assert [m.id for m in await sink.list(limit=1)] == ["m3"]
    assert await sink.list("+10000000000") == []


async def test_ping_answers_when_the_store_and_bus_are_usable(backend: Backend) -> None:
    await backend.store.ping()
    await backend.bus.ping()


async def test_purge_forgets_finished_otps_and_idle_recipients_only(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()
    old_done = make_otp("otp_old_done", "r-old", now, status=Status.APPROVED)
    old_live = make_otp("otp_old_live", "r-live", now)
    fresh_done = make_otp("otp_fresh_done", "r-new", now + 4000, status=Status.EXPIRED)
    await store.transact("r-old", lambda s: Change(None, RecipientState.empty("r-old"),
                                                  [old_done]))
    # Idle as long, but holding a pending code (one the sweeper has not reached): kept.
    await store.transact("r-live", lambda s: Change(None, with_pending("r-live", old_live),
                                                   [old_live]))
    claim = await store.claim(SendKey("otp_old_done", 1, "sms"), "twilio", now, 30)
    await store.settle(Delivery(
        otp_id="otp_old_done", send_no=1, channel="sms", driver="twilio",
        status=DeliveryStatus.SENT, attempts=1, updated_at=now), [], claimed=claim.attempts)
    clock.advance(4000)
    await store.transact("r-new", lambda s: Change(None, with_pending("r-new", fresh_done),
                                                  [fresh_done]))

    # A backend may keep an idle recipient up to an hour past ``recipients_before``.
    gone = await store.purge(otps_before=now + 301, recipients_before=now + 3800)

    assert gone == 2  # the old finished OTP and the idle recipient
    assert await store.get("otp_old_done") is None
    assert await store.claim(SendKey("otp_old_done", 1, "sms"), "twilio", now + 999,
                                  30) == Claim(state=ClaimState.CLAIMED, attempts=1)
    assert await store.get("otp_old_live") is not None
    assert await store.get("otp_fresh_done") is not None
    seen: list[bool] = []
    await store.transact("r-old", lambda s: (seen.append(s is None), Change(None))[1])
    await store.transact("r-new", lambda s: (seen.append(s is None), Change(None))[1])
    await store.transact("r-live", lambda s: (seen.append(s is None), Change(None))[1])
    assert seen == [True, False, False]


async def test_an_answer_kept_by_a_transaction_is_kept_with_it_or_not_at_all(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()

    def keep(slot: str) -> Keep[str]:
        return Keep(slot=slot, ttl=60.0,
                    answer=lambda result: Remembered("fp", 202, result.encode(), now))

    made = await store.transact_kept("r", lambda s: Change("kept"), keep("idem-kept"))
    assert (made.result, made.replayed, made.answer.body) == ("kept", False, b"kept")

    def refuse(state: RecipientState | None) -> Change[str]:
        raise RateLimited("no", retry_after=5)

    with pytest.raises(RateLimited):
        await store.transact_kept("r", refuse, keep("idem-refused"))
    assert await store.recall("idem-refused", now) is None

    kept = await store.recall("idem-kept", now)
    assert kept is not None
    assert kept.body == b"kept"
    # A first answer stays the answer: a later request with its key decides nothing.
    decided: list[bool] = []

    def again_decide(state: RecipientState | None) -> Change[str]:
        decided.append(True)
        return Change("other")

    again = await store.transact_kept("r", again_decide, keep("idem-kept"))
    assert (again.replayed, again.result, again.answer.body) == (True, None, b"kept")
    assert decided == []
    assert (await store.recall("idem-kept", now)) == kept


async def test_a_claim_says_whether_its_otp_is_still_pending_and_which_send_is_latest(
    backend: Backend, clock: FrozenClock
) -> None:
    now = clock.now()
    gone = await backend.store.claim(SendKey("otp_gone", 1, "sms"), "twilio", now, 30)
    assert (gone.state, gone.otp_status) == (ClaimState.CLAIMED, None)

    otp = make_otp(OTP, "r", now, send_count=2)
    await backend.store.transact("r", lambda s: Change(None, None, [otp]))
    claim = await backend.store.claim(SendKey(OTP, 1, "sms"), "twilio", now, 30)
    assert (claim.otp_status, claim.send_count) == (Status.PENDING, 2)
    busy = await backend.store.claim(SendKey(OTP, 1, "sms"), "twilio", now + 10, 30)
    assert busy.state is ClaimState.BUSY
    assert busy.retry_in == pytest.approx(20)


async def sent_as(backend: Backend, now: float, provider_id: str,
                  routes: dict[str, list[str]] | None = None) -> Otp:
    otp = make_otp(OTP, "r", now)
    otp.routes = routes or {"sms": ["twilio"]}
    otp.sealed = "sealed-for-dispatchers"
    await backend.store.transact("r", lambda s: Change(None, with_pending("r", otp), [otp]))
    claim = await backend.store.claim(SendKey(OTP, 1, "sms"), "twilio", now, 30)
    assert await backend.store.settle(Delivery(
        otp_id=OTP, send_no=1, channel="sms", driver="twilio", status=DeliveryStatus.SENT,
        attempts=1, updated_at=now, provider_id=provider_id), [], claimed=claim.attempts)
    return otp


def news(status: DeliveryStatus, provider_id: str, at: float, driver: str = "twilio",
         code: str | None = None) -> Callable[[Delivery, Otp | None], Any]:
    report = ReceiptNews(driver=driver, provider_id=provider_id, status=status,
                         error_code=code, at=at)
    return lambda row, otp: decide_receipt(row, otp, report)


async def test_a_receipt_moves_the_send_it_names_forward_once_and_publishes_with_it(
    backend: Backend, clock: FrozenClock
) -> None:
    now = clock.now()
    seen = Recorder()
    await subscribe(backend.bus, "delivered", Filter.of(type=EventType.DELIVERED.value), seen)
    await sent_as(backend, now, "SM42")

    moved = await backend.store.record_receipt(
        "twilio", "SM42", news(DeliveryStatus.DELIVERED, "SM42", now + 5))
    assert moved is not None
    assert (moved.otp_id, moved.channel, moved.status) == (OTP, "sms",
                                                           DeliveryStatus.DELIVERED)
    [row] = await backend.store.deliveries(OTP)
    assert (row.status, row.provider_id, row.updated_at) == (DeliveryStatus.DELIVERED, "SM42",
                                                             now + 5)
    assert await backend.bus.pump() == 1
    assert len(seen.ids) == 1

    # The same callback again, and a late "failed" after "delivered", change nothing.
    for status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED):
        assert await backend.store.record_receipt(
            "twilio", "SM42", news(status, "SM42", now + 9)) is None
    [row] = await backend.store.deliveries(OTP)
    assert row.status is DeliveryStatus.DELIVERED
    assert await backend.bus.pump() == 0


async def test_a_receipt_for_an_unknown_message_or_another_driver_changes_nothing(
    backend: Backend, clock: FrozenClock
) -> None:
    now = clock.now()
    await sent_as(backend, now, "SM7")

    def never(row: Delivery, otp: Otp | None) -> None:
        raise AssertionError("no decision for a receipt that names no send")

    assert await backend.store.record_receipt("twilio", "SM-unknown", never) is None
    assert await backend.store.record_receipt("vonage", "SM7", never) is None
    [row] = await backend.store.deliveries(OTP)
    assert row.status is DeliveryStatus.SENT


async def test_a_failed_receipt_keeps_the_providers_code_when_no_driver_is_left(
    backend: Backend, clock: FrozenClock
) -> None:
    now = clock.now()
    await sent_as(backend, now, "SM9")
    moved = await backend.store.record_receipt(
        "twilio", "SM9", news(DeliveryStatus.FAILED, "SM9", now + 1, code="30003"))
    assert moved is not None
    assert moved.status is DeliveryStatus.FAILED
    assert moved.error is not None and "30003" in moved.error


async def test_a_failed_receipt_hands_a_pending_send_to_the_next_driver_of_its_chain(
    backend: Backend, clock: FrozenClock
) -> None:
    now = clock.now()
    seen = Recorder()
    await subscribe(backend.bus, "to-vonage", Filter.of(type=EventType.DISPATCH.value,
                                                        driver="vonage"), seen)
    await sent_as(backend, now, "SM5", routes={"sms": ["twilio", "vonage", "sinch"]})

    moved = await backend.store.record_receipt(
        "twilio", "SM5", news(DeliveryStatus.FAILED, "SM5", now + 2, code="30006"))
    assert moved is not None
    assert (moved.driver, moved.status, moved.attempts) == ("vonage", DeliveryStatus.QUEUED, 0)
    assert await backend.bus.pump() == 1
    [handover] = seen.seen
    assert handover.data["fallbacks"] == ["sinch"]
    assert handover.data["sealed"] == "sealed-for-dispatchers"
    # The old driver's id names nothing any more; the new driver's claim goes through.
    assert await backend.store.record_receipt(
        "twilio", "SM5", news(DeliveryStatus.DELIVERED, "SM5", now + 3)) is None
    claim = await backend.store.claim(SendKey(OTP, 1, "sms"), "vonage", now + 4, 30)
    assert claim.state is ClaimState.CLAIMED


async def test_concurrent_requests_under_one_idempotency_slot_decide_once(
    backend: Backend, clock: FrozenClock
) -> None:
    decided: list[int] = []

    def decide(n: int) -> Decide[int]:
        def run(state: RecipientState | None) -> Change[int]:
            decided.append(n)
            return Change(n, RecipientState.empty("r"))
        return run

    keep = Keep(slot="idem-race", ttl=60.0,
                answer=lambda n: Remembered("fp", 202, str(n).encode(), clock.now()))
    outcomes = await asyncio.gather(*(backend.store.transact_kept("r", decide(n), keep)
                                      for n in range(20)))

    assert len(decided) == 1
    assert sum(not o.replayed for o in outcomes) == 1
    assert {o.answer.body for o in outcomes} == {str(decided[0]).encode()}


async def test_the_first_key_check_kept_is_the_one_every_later_caller_gets(
    backend: Backend,
) -> None:
    assert await backend.store.keep_key_check("check-1") == "check-1"
    assert await backend.store.keep_key_check("check-2") == "check-1"
