"""CloudEvents envelope: what goes on the wire, and how subscriptions filter it."""

from __future__ import annotations

import json
import os
import re

import pytest

from otpgate import events, redact
from otpgate.events import CloudEvent, EventType, Filter

T0 = 1_800_000_000.25
REQUIRED = ("specversion", "id", "source", "type", "time", "subject")


def dispatch(channel: str = "sms", driver: str = "twilio://") -> CloudEvent:
    return events.new(EventType.DISPATCH, "otp_a", {"send_no": 1}, T0, channel=channel,
                      driver=driver)


def test_a_new_event_carries_the_cloudevents_attributes() -> None:
    event = events.new(EventType.REQUESTED, "otp_a", {"to": "+1415•••0123"}, T0)
    assert event.specversion == "1.0"
    assert event.source == "urn:otpgate"
    assert event.subject == "otp_a"
    assert event.type == "otpgate.otp.requested.v1"
    assert event.time == "2027-01-15T08:00:00.250Z"
    assert re.fullmatch(r"[0-9a-f]{16}\.[0-9a-f]+", event.id)


def test_an_event_id_survives_log_masking_whatever_its_counter() -> None:
    """A counter of decimal digits only (0x4521) is shaped like a code; the id must still
    reach the logs whole, or an operator has nothing to replay by."""
    ids = events._EventIds()
    for _ in range(0x4520):
        ids()
    event_id = ids()
    assert event_id.endswith(".4521")
    assert redact.scrub(f"dead-lettered {event_id} on sms") == f"dead-lettered {event_id} on sms"


def test_event_ids_of_a_forked_process_do_not_collide() -> None:
    here = events.new(EventType.SENT, "otp_a", {}, T0).id
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first event id and leave at once
        os.write(write, events.new(EventType.SENT, "otp_a", {}, T0).id.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        there = pipe.read()
    assert here.split("-")[0] != there.split("-")[0]


def test_every_event_gets_its_own_id() -> None:
    ids = {events.new(EventType.SENT, "otp_a", {}, T0).id for _ in range(100)}
    assert len(ids) == 100


def test_an_event_survives_an_encode_decode_round_trip() -> None:
    for event in (dispatch(), events.new(EventType.APPROVED, "otp_b", {"n": [1, "x"]}, T0)):
        assert events.decode(events.encode(event)) == event
        assert events.decode(events.encode(event).decode()) == event


def test_the_encoded_event_is_json_with_every_required_attribute() -> None:
    event = events.new(EventType.REQUESTED, "otp_a", {"to": "+1415•••0123"}, T0)
    wire = json.loads(events.encode(event))
    missing = [name for name in REQUIRED if name not in wire]
    assert missing == [], f"BUG: the encoded CloudEvent lacks required attributes {missing}"
    assert wire["specversion"] == "1.0"
    assert wire["time"].endswith("Z")
    assert wire["subject"] == "otp_a"
    assert wire["data"] == {"to": "+1415•••0123"}


def test_the_encoded_event_says_its_data_is_json() -> None:
    wire = json.loads(events.encode(dispatch()))
    assert wire.get("datacontenttype") == "application/json", (
        "BUG: datacontenttype is dropped on the wire because it equals its default"
    )


def test_channel_and_driver_travel_as_extension_attributes_only_when_set() -> None:
    wire = json.loads(events.encode(dispatch()))
    assert (wire["channel"], wire["driver"]) == ("sms", "twilio://")
    plain = json.loads(events.encode(events.new(EventType.SENT, "otp_a", {}, T0)))
    assert "channel" not in plain
    assert "driver" not in plain


def test_an_event_from_another_producer_decodes() -> None:
    raw = json.dumps({"specversion": "1.0", "id": "e1", "source": "urn:x",
                      "type": "otpgate.otp.sent.v1", "time": "2027-01-15T08:00:00Z",
                      "subject": "otp_a", "data": {"k": 1}})
    event = events.decode(raw)
    assert (event.id, event.source, event.data) == ("e1", "urn:x", {"k": 1})


def test_every_event_type_is_versioned_under_the_otp_or_rule_namespace() -> None:
    assert len(EventType) == 12
    for kind in EventType:
        assert re.fullmatch(r"otpgate\.(otp|rule)\.[a-z_]+\.v1", kind.value)


def test_an_empty_filter_matches_everything() -> None:
    assert Filter().matches(dispatch())
    assert Filter.of().matches(events.new(EventType.SENT, "otp_a", {}, T0))


def test_a_filter_on_type_matches_only_the_listed_types() -> None:
    only = Filter.of(type=EventType.DISPATCH.value)
    assert only.matches(dispatch())
    assert not only.matches(events.new(EventType.SENT, "otp_a", {}, T0))
    either = Filter.of(type=[EventType.SENT.value, EventType.DISPATCH.value])
    assert either.matches(dispatch())
    assert either.matches(events.new(EventType.SENT, "otp_a", {}, T0))


@pytest.mark.parametrize(("driver", "wanted"), [("twilio://", True), ("vonage://", False)])
def test_a_filter_on_type_and_driver_needs_both_to_match(driver: str, wanted: bool) -> None:
    rule = Filter.of(type=EventType.DISPATCH.value, driver="twilio://")
    assert rule.matches(dispatch(driver=driver)) is wanted


def test_a_filter_on_driver_never_matches_events_without_one() -> None:
    assert not Filter.of(driver="twilio://").matches(events.new(EventType.SENT, "otp_a", {},
                                                                T0))


def test_a_filter_on_channel_lists_the_channels_it_takes() -> None:
    rule = Filter.of(channel=("sms", "voice"))
    assert rule.matches(dispatch("sms"))
    assert rule.matches(dispatch("voice"))
    assert not rule.matches(dispatch("email"))
