"""The lifecycle's pure decisions, driven by a clock reading and applied the way a store
applies them: the state handed over is a copy, written back only when it changed."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import msgspec
import pytest

from otpgate import events
from otpgate.core import codes, endings, ids, lifecycle
from otpgate.core.lifecycle import Outcome, Verdict
from otpgate.core.otp import Status
from otpgate.core.policy import Policy
from otpgate.crypto import Sealed, seal_aad
from otpgate.errors import RateLimited
from otpgate.events import EventType
from tests.unit.flow import KEY, KEYRING, T0, TO, Flow


@pytest.fixture
def flow() -> Flow:
    return Flow()


def test_a_first_request_creates_a_pending_code_and_asks_for_its_dispatch(flow: Flow) -> None:
    got = flow.request(T0, "123456", ttl=120)
    otp = got.otp
    assert got.outcome is Outcome.CREATED
    assert got.attempts_left == 5
    assert ids.is_otp_id(otp.id)
    assert otp.status is Status.PENDING
    assert (otp.send_count, otp.failed_attempts, otp.expires_at) == (1, 0, T0 + 120)
    assert otp.resend_after == T0 + 30
    assert otp.recipient == KEY
    assert otp.to_masked == "+1415•••0123"
    assert codes.matches(KEYRING.digest_key, otp.id, "123456", otp.digest)
    assert flow.types() == [EventType.REQUESTED, EventType.DISPATCH]
    dispatch = flow.events[1]
    assert (dispatch.subject, dispatch.channel, dispatch.driver) == (otp.id, "sms", "capture://")
    assert dispatch.data["send_no"] == 1
    assert dispatch.data["fallbacks"] == ["console://"]
    opened = KEYRING.open(dispatch.data["sealed"], seal_aad(otp.id, 1))
    assert opened == Sealed(to=TO, code="123456")


def test_one_dispatch_event_is_emitted_per_channel(flow: Flow) -> None:
    flow.request(T0, channels=("sms", "voice"))
    dispatches = [e for e in flow.events if e.type == EventType.DISPATCH]
    assert [e.channel for e in dispatches] == ["sms", "voice"]


@pytest.mark.parametrize(("offset", "approved"), [(-1.0, True), (-0.001, True), (0.0, False),
                                                  (1.0, False)])
def test_a_code_verifies_until_just_before_it_expires(flow: Flow, offset: float,
                                                      approved: bool) -> None:
    otp = flow.request(T0, "123456").otp
    verdict = flow.verify(otp.expires_at + offset, "123456", otp_id=otp.id)
    assert verdict.valid is approved
    final = flow.otps[otp.id]
    if approved:
        assert verdict.status is Status.APPROVED
        assert final.status is Status.APPROVED
        assert flow.types()[-1] == EventType.APPROVED
    else:
        assert verdict.otp is None
        assert final.status is Status.EXPIRED
        assert flow.types()[-1] == EventType.EXPIRED
        assert EventType.APPROVED not in flow.types()


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_a_request_after_expiry_creates_a_new_code_and_reports_the_old_one_expired(
    flow: Flow, offset: float,
) -> None:
    old = flow.request(T0, "111111").otp
    flow.events.clear()
    new = flow.request(old.expires_at + offset, "222222")
    assert new.outcome is Outcome.CREATED
    assert new.otp.id != old.id
    assert new.otp.send_count == 1
    assert flow.otps[old.id].status is Status.EXPIRED
    assert flow.types() == [EventType.EXPIRED, EventType.REQUESTED, EventType.DISPATCH]
    assert flow.events[0].subject == old.id


def test_a_request_one_second_before_expiry_resends_under_the_same_id(flow: Flow) -> None:
    old = flow.request(T0).otp
    again = flow.request(old.expires_at - 1)
    assert again.outcome is Outcome.RESENT
    assert again.otp.id == old.id


def test_wrong_answers_count_down_and_the_last_one_kills_the_code(flow: Flow) -> None:
    otp = flow.request(T0, "123456").otp
    lefts = [flow.verify(T0 + i, "000000").attempts_left for i in range(1, 5)]
    assert lefts == [4, 3, 2, 1]
    last = flow.verify(T0 + 5, "000000")
    assert last.valid is False
    assert last.status is Status.MAX_ATTEMPTS_REACHED
    assert last.attempts_left == 0
    assert flow.otps[otp.id].status is Status.MAX_ATTEMPTS_REACHED
    assert flow.types().count(EventType.VERIFICATION_FAILED) == 5
    failed = [e for e in flow.events if e.type == EventType.VERIFICATION_FAILED]
    assert [e.data["attempts_left"] for e in failed] == [4, 3, 2, 1, 0]


def test_the_right_code_is_refused_once_attempts_are_exhausted(flow: Flow) -> None:
    otp = flow.request(T0, "123456").otp
    for i in range(5):
        flow.verify(T0 + i, "000000")
    by_id = flow.verify(T0 + 6, "123456", otp_id=otp.id)
    by_recipient = flow.verify(T0 + 7, "123456")
    assert by_id.valid is False
    assert by_recipient.valid is False
    assert EventType.APPROVED not in flow.types()
    assert flow.otps[otp.id].status is Status.MAX_ATTEMPTS_REACHED


def test_a_code_verifies_only_once(flow: Flow) -> None:
    otp = flow.request(T0, "123456").otp
    assert flow.verify(T0 + 1, "123456", otp_id=otp.id).valid is True
    again = flow.verify(T0 + 2, "123456", otp_id=otp.id)
    assert again.valid is False
    assert again.otp is None
    assert flow.types().count(EventType.APPROVED) == 1


@pytest.mark.parametrize("offset", [0.0, 1.0, 29.0, 29.999])
def test_a_request_before_resend_after_is_coalesced_into_the_pending_one(
    flow: Flow, offset: float,
) -> None:
    first = flow.request(T0, "111111").otp
    flow.events.clear()
    again = flow.request(T0 + offset, "222222")
    assert again.outcome is Outcome.COALESCED
    assert again.otp.id == first.id
    assert again.otp.send_count == 1
    assert flow.last is not None
    assert flow.last.state is None
    assert flow.last.events == []
    assert flow.events == []
    assert codes.matches(KEYRING.digest_key, first.id, "111111", flow.state.pending["login"].digest)  # type: ignore[union-attr]


def test_a_request_after_the_cooldown_resends_a_fresh_code_under_the_same_id(
    flow: Flow,
) -> None:
    first = flow.request(T0, "111111").otp
    flow.verify(T0 + 5, "000000")
    flow.verify(T0 + 6, "000001")
    flow.events.clear()
    again = flow.request(T0 + 30, "222222")
    otp = again.otp
    assert again.outcome is Outcome.RESENT
    assert otp.id == first.id
    assert otp.send_count == 2
    assert otp.failed_attempts == 2
    assert again.attempts_left == 3
    assert otp.expires_at == T0 + 30 + 300
    assert otp.resend_after == T0 + 60
    assert not codes.matches(KEYRING.digest_key, otp.id, "111111", otp.digest)
    assert codes.matches(KEYRING.digest_key, otp.id, "222222", otp.digest)
    assert flow.types() == [EventType.REQUESTED, EventType.DISPATCH]
    assert flow.events[1].data["send_no"] == 2
    assert KEYRING.open(flow.events[1].data["sealed"], seal_aad(otp.id, 2)).code == "222222"
    assert flow.verify(T0 + 31, "111111").valid is False
    assert flow.verify(T0 + 32, "222222").valid is True


def test_the_send_limit_answers_with_the_seconds_until_the_oldest_send_leaves_the_window(
    flow: Flow,
) -> None:
    for n in range(5):
        assert flow.request(T0 + 30 * n, ttl=600).otp.send_count == n + 1
    with pytest.raises(RateLimited) as err:
        flow.request(T0 + 150, ttl=600)
    assert err.value.retry_after == 450
    with pytest.raises(RateLimited) as err:
        flow.request(T0 + 150.5, ttl=600)
    assert err.value.retry_after == 450  # 449.5 s, rounded up
    with pytest.raises(RateLimited) as err:
        flow.request(T0 + 599, ttl=600)
    assert err.value.retry_after == 1
    again = flow.request(T0 + 600, ttl=600)
    assert again.outcome is Outcome.RESENT
    assert again.otp.send_count == 6


def test_the_send_limit_is_counted_per_purpose(flow: Flow) -> None:
    for n in range(5):
        flow.request(T0 + 30 * n, ttl=600)
    with pytest.raises(RateLimited):
        flow.request(T0 + 150, ttl=600)
    assert flow.request(T0 + 150, purpose="signup").outcome is Outcome.CREATED


def test_a_refused_request_changes_nothing(flow: Flow) -> None:
    for n in range(5):
        flow.request(T0 + 30 * n, ttl=600)
    before = msgspec.msgpack.encode(flow.state)
    count = len(flow.events)
    with pytest.raises(RateLimited):
        flow.request(T0 + 200, ttl=600)
    assert msgspec.msgpack.encode(flow.state) == before
    assert len(flow.events) == count


def test_recipient_failures_survive_a_new_code_and_cap_its_attempts() -> None:
    flow = Flow(Policy(lock_after=7))
    first = flow.request(T0, "111111").otp
    for i in range(5):
        flow.verify(T0 + i, "000000")
    assert flow.otps[first.id].status is Status.MAX_ATTEMPTS_REACHED
    second = flow.request(T0 + 10, "222222")
    assert second.outcome is Outcome.CREATED
    assert second.otp.id != first.id
    assert second.otp.failed_attempts == 0
    assert second.attempts_left == 2  # the recipient's budget (7 - 5) is the smaller
    assert flow.verify(T0 + 11, "000000").attempts_left == 1


def test_spending_the_recipient_budget_locks_it_and_kills_every_pending_code() -> None:
    flow = Flow(Policy(lock_after=7))
    flow.request(T0, "111111")
    for i in range(5):
        flow.verify(T0 + i, "000000")
    current = flow.request(T0 + 10, "222222").otp
    other = flow.request(T0 + 10, "333333", purpose="signup").otp
    flow.verify(T0 + 11, "000000")
    flow.events.clear()
    last = flow.verify(T0 + 12, "000000")
    assert last.valid is False
    assert last.attempts_left == 0
    assert last.status is Status.MAX_ATTEMPTS_REACHED
    assert last.locked_until == T0 + 12 + 86400
    assert flow.otps[current.id].status is Status.MAX_ATTEMPTS_REACHED
    assert flow.otps[other.id].status is Status.MAX_ATTEMPTS_REACHED
    assert flow.state is not None
    assert flow.state.pending == {}
    locked = [e for e in flow.events if e.type == EventType.LOCKED]
    assert sorted(e.subject for e in locked) == sorted([current.id, other.id])
    assert all(e.data["locked_until"] == T0 + 12 + 86400 for e in locked)
    assert all(e.data["failures"] == 7 for e in locked)
    assert flow.verify(T0 + 13, "333333", purpose="signup").valid is False


def test_a_locked_recipient_gets_no_code_until_the_lock_time_passes() -> None:
    flow = Flow(Policy(lock_after=3, lock_time=3600, max_attempts=5))
    flow.request(T0, "111111")
    for i in range(3):
        flow.verify(T0 + 100 + i, "000000")
    with pytest.raises(RateLimited) as err:
        flow.request(T0 + 200, "222222")
    assert (err.value.retry_after, err.value.rule) == (3600 - 98, "recipient-lock")
    with pytest.raises(RateLimited) as err:
        flow.request(T0 + 102 + 3599, "222222", purpose="signup")
    assert err.value.retry_after == 1
    fresh = flow.request(T0 + 102 + 3600, "222222")
    assert fresh.outcome is Outcome.CREATED
    assert fresh.attempts_left == 3  # the lock's end forgot the failures


def test_an_answer_with_no_pending_code_counts_nothing_yet_reads_like_a_wrong_one(
) -> None:
    probing, guessing = Flow(), Flow()
    guessing.request(T0, "123456")
    missing = probing.verify(T0 + 1, "000000")
    wrong = guessing.verify(T0 + 1, "000000")
    assert (missing.valid, missing.status, missing.attempts_left) == (
        wrong.valid, wrong.status, wrong.attempts_left) == (False, Status.PENDING, 4)
    assert missing.counted is False
    assert probing.state is not None
    assert probing.state.streak == 0
    assert probing.events == []


def test_repeated_answers_with_no_pending_code_run_down_like_wrong_ones() -> None:
    probing, guessing = Flow(), Flow()
    guessing.request(T0, "123456")
    for i in range(6):
        missing = probing.verify(T0 + i, "000000")
        wrong = guessing.verify(T0 + i, "000000")
        assert (missing.valid, missing.status, missing.attempts_left) == (
            wrong.valid, wrong.status, wrong.attempts_left), i


def test_answers_with_no_live_code_neither_lock_nor_touch_the_codes_of_other_purposes(
) -> None:
    flow = Flow(Policy(lock_after=3, delay_after=2))
    other = flow.request(T0, "123456", purpose="signup").otp
    for i in range(50):
        flow.verify(T0 + 1 + i, "000000", purpose=f"p{i % 7}")
    assert flow.state is not None
    assert (flow.state.streak, flow.state.locked_until) == (0, 0.0)
    assert flow.state.pending["signup"].failed_attempts == 0
    assert flow.request(T0 + 60, purpose="login").outcome is Outcome.CREATED
    assert flow.verify(T0 + 61, "123456", purpose="signup").valid is True
    assert flow.otps[other.id].status is Status.APPROVED
    assert EventType.LOCKED not in flow.types()


def test_consecutive_failures_are_forgotten_a_lock_time_after_the_last_one() -> None:
    flow = Flow(Policy(lock_time=86400))
    flow.request(T0, "123456")
    for i in range(5):
        flow.verify(T0 + i, "000000")
    flow.request(T0 + 30, "123456", purpose="other")
    flow.verify(T0 + 31, "000000", purpose="other")
    assert flow.state is not None and flow.state.streak == 6
    flow.request(T0 + 4 + 86399, "123456", purpose="third")
    assert flow.state.streak == 6
    flow.request(T0 + 31 + 86400, "123456", purpose="fourth")
    assert flow.state.streak == 0


def test_an_unlock_ends_the_lock_and_forgets_the_failures() -> None:
    flow = Flow(Policy(lock_after=5))
    flow.request(T0, "123456")
    for i in range(5):
        flow.verify(T0 + i, "000000")
    assert flow.state is not None and flow.state.locked(T0 + 10)
    change = endings.decide_unlock(flow._copy(), T0 + 10, flow.policy)
    flow._apply(change)  # type: ignore[arg-type]
    assert change.result == endings.Unlocked(was_locked=True, failures=5)
    assert not flow.state.locked(T0 + 10)
    assert flow.request(T0 + 40).attempts_left == 5
    assert endings.decide_unlock(None, T0, flow.policy).result == endings.Unlocked(False, 0)


def test_a_right_code_is_told_approved_only_for_a_while_after_its_approval() -> None:
    flow = Flow()
    otp = flow.request(T0, "123456").otp
    assert flow.verify(T0 + 1, "123456").valid is True
    again = flow.verify(T0 + 2, "123456")
    assert (again.valid, again.status, again.otp_id, again.counted) == (
        False, Status.APPROVED, otp.id, False)
    later = flow.verify(T0 + 1 + 600, "123456")  # max_ttl later: a stand-in answers
    assert (later.status, later.otp_id, later.counted) == (Status.PENDING, None, False)
    assert flow.state is not None and flow.state.streak == 0


def test_by_id_an_answer_with_no_pending_code_counts_nothing(
    flow: Flow,
) -> None:
    flow.verify(T0, "000000")
    verdict = flow.verify(T0 + 1, "000000", otp_id="otp_" + "A" * 22)
    assert verdict == Verdict(None, False, Status.PENDING, None)
    assert flow.last is not None
    assert flow.last.state is None
    assert flow.last.events == []
    assert flow.state is not None
    assert flow.state.streak == 0


def test_a_pending_code_can_be_canceled(flow: Flow) -> None:
    otp = flow.request(T0).otp
    change = endings.decide_cancel(flow._copy(), otp.id, T0 + 5, flow.policy)
    flow._apply(change)  # type: ignore[arg-type]
    assert change.result is not None
    assert change.result.status is Status.CANCELED
    assert flow.otps[otp.id].status is Status.CANCELED
    assert flow.otps[otp.id].updated_at == T0 + 5
    assert flow.types()[-1] == EventType.CANCELED
    assert flow.state is not None
    assert "login" not in flow.state.pending
    assert flow.verify(T0 + 6, "123456", otp_id=otp.id).valid is False


def test_canceling_what_is_not_pending_changes_nothing(flow: Flow) -> None:
    assert endings.decide_cancel(None, "otp_x", T0, flow.policy).result is None
    otp = flow.request(T0).otp
    change = endings.decide_cancel(flow._copy(), "otp_" + "B" * 22, T0 + 1, flow.policy)
    assert change.result is None
    assert change.events == []
    late = endings.decide_cancel(flow._copy(), otp.id, otp.expires_at, flow.policy)
    assert late.result is None
    assert [e.type for e in late.events] == [EventType.EXPIRED]


def test_decide_expire_kills_only_codes_whose_time_is_up(flow: Flow) -> None:
    assert endings.decide_expire(None, T0, flow.policy).result == 0
    short = flow.request(T0, ttl=60).otp
    long = flow.request(T0, ttl=600, purpose="signup").otp
    early = endings.decide_expire(flow._copy(), T0 + 59, flow.policy)
    assert early.result == 0
    assert early.state is None
    assert early.events == []
    due = endings.decide_expire(flow._copy(), T0 + 60, flow.policy)
    flow._apply(due)  # type: ignore[arg-type]
    assert due.result == 1
    assert [o.id for o in due.otps] == [short.id]
    assert [(e.type, e.subject) for e in due.events] == [(EventType.EXPIRED, short.id)]
    assert flow.otps[short.id].status is Status.EXPIRED
    assert flow.state is not None
    assert list(flow.state.pending) == ["signup"]
    assert flow.state.pending["signup"].id == long.id


def _whole_flow() -> tuple[Flow, list[str]]:
    flow = Flow(Policy(lock_after=5))
    used = ["482913", "730145", "095532", "661204", "318877"]
    first = flow.request(T0, used[0], channels=("sms", "voice")).otp
    flow.verify(T0 + 1, "000000")
    flow.request(T0 + 40, used[1])
    flow.verify(T0 + 41, used[1], otp_id=first.id)
    flow.request(T0 + 50, used[2], purpose="signup")
    change = endings.decide_expire(flow._copy(), T0 + 400, flow.policy)
    flow._apply(change)  # type: ignore[arg-type]
    third = flow.request(T0 + 500, used[3], purpose="reset").otp
    flow._apply(endings.decide_cancel(flow._copy(), third.id, T0 + 501, flow.policy))  # type: ignore[arg-type]
    flow.request(T0 + 600, used[4])
    flow.request(T0 + 600, "246810", purpose="signup")
    used.append("246810")
    for i in range(5):
        flow.verify(T0 + 601 + i, "999999")
    return flow, used


def _leaks(text: str, codes_used: list[str]) -> list[str]:
    needles = [TO, TO[1:], "4155550123", "5550123", *codes_used]
    return [n for n in needles if n in text]


def test_a_whole_flow_emits_every_kind_of_event() -> None:
    flow, _ = _whole_flow()
    assert set(flow.types()) >= {EventType.REQUESTED, EventType.DISPATCH, EventType.APPROVED,
                                 EventType.VERIFICATION_FAILED, EventType.EXPIRED,
                                 EventType.CANCELED, EventType.LOCKED}


def test_events_of_a_whole_flow_carry_only_masked_recipients_and_no_code() -> None:
    flow, used = _whole_flow()
    assert flow.events
    for event in flow.events:
        encoded = events.encode(event).decode()
        assert _leaks(encoded, used) == [], event.type
        assert event.data.get("to", "+1415•••0123") == "+1415•••0123"


def test_the_sealed_field_of_a_dispatch_event_holds_neither_code_nor_number_in_plain_text(
) -> None:
    flow, used = _whole_flow()
    sealed = [e.data["sealed"] for e in flow.events if e.type == EventType.DISPATCH]
    assert len(sealed) == 7
    for box in sealed:
        assert _leaks(box, used) == []
        raw = base64.urlsafe_b64decode(box)
        assert all(n.encode() not in raw for n in [TO, "4155550123", *used])


def test_records_kept_for_the_store_hold_only_digests_and_masked_recipients() -> None:
    flow, used = _whole_flow()
    blobs: Iterator[bytes] = (msgspec.json.encode(o) for o in flow.otps.values())
    for blob in [*blobs, msgspec.json.encode(flow.state)]:
        assert _leaks(blob.decode(), used) == []


def test_a_wrong_answer_costs_as_many_code_checks_with_a_live_code_as_without() -> None:
    calls: list[str] = []

    def check(otp_id: str, digest: bytes) -> bool:
        calls.append(otp_id)
        return False

    known = Flow()
    known.request(T0, "123456")
    counts = []
    for state in (known._copy(), None):
        calls.clear()
        lifecycle.decide_verify(state, KEY, lambda s: s.pending.get("login"), check,
                                Policy(), T0 + 1, missing="login")
        counts.append(len(calls))
    assert counts == [2, 2]
