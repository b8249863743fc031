"""How the Redis store keeps its values: msgspec msgpack structs, and the OTP records of
a change (a pending OTP's record is a reference to its recipient's state, which holds it).

Structs are encoded as maps, so a field added with a default (a tenant, say) reads back
from older values unchanged, and older code reading newer values ignores it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from otpgate.core.lifecycle import Change
from otpgate.core.otp import Delivery, Otp, RecipientState, Status
from otpgate.store.base import ApiKey, Remembered

K = TypeVar("K")
V = TypeVar("V")

encode = msgspec.msgpack.Encoder().encode
state_of = msgspec.msgpack.Decoder(RecipientState).decode
otp_of = msgspec.msgpack.Decoder(Otp).decode
delivery_of = msgspec.msgpack.Decoder(Delivery).decode
api_key_of = msgspec.msgpack.Decoder(ApiKey).decode
answer_of = msgspec.msgpack.Decoder(Remembered).decode

def lua(value: bytes) -> msgspec.Raw:
    """``value`` for a script's msgpack arguments (``encode``d): Redis' Lua msgpack reader
    knows no ``bin`` type, so bytes go as a ``str`` (a Lua string holds any bytes)."""
    n = len(value)
    head = (bytes([0xA0 | n]) if n < 32 else b"\xd9" + bytes([n]) if n < 256
            else b"\xda" + n.to_bytes(2, "big") if n < 65536 else b"\xdb" + n.to_bytes(4, "big"))
    return msgspec.Raw(head + value)


def number(value: float) -> str:
    """A float as scripts take it: the exact decimal (Lua's own would round it)."""
    return repr(float(value))


STUB = b"~"
"""The first byte of a pending OTP's record; the rest names the recipient holding it."""


@dataclass(frozen=True, slots=True)
class Found:
    """An OTP as ``get_otp.lua`` found it, and the state it was read from, if any."""

    otp: Otp | None
    holder: str | None = None
    version: bytes = b"0"
    state: bytes | None = None


def found(reply: list[Any], otp_id: str) -> Found:
    """Read ``otp_of``'s reply (``lua/prelude.lua``)."""
    if not reply:
        return Found(None)
    record = bytes(reply[0])
    if not record.startswith(STUB):
        return Found(otp_of(record))
    holder, version, blob = record[1:].decode(), bytes(reply[1]), reply[2]
    if blob is None:
        return Found(None)
    otp = state_of(blob).find(otp_id)
    return Found(otp, holder, version, bytes(blob))


@dataclass(frozen=True, slots=True)
class Record:
    otp_id: str
    value: bytes
    due_member: str
    expires_at: float
    pending: bool


def records(key: str, change: Change[Any], before: bytes | None) -> Iterator[Record]:
    """The records ``change`` writes under recipient ``key``: a reference for an OTP its
    new state holds, the whole record otherwise — also for any OTP the decision dropped
    from the state without listing it (kept as it was, as a table row would be)."""
    state = change.state
    listed = {otp.id for otp in change.otps}
    for otp in change.otps:
        held = state is not None and otp.status is Status.PENDING and \
            (pending := state.pending.get(otp.purpose)) is not None and pending.id == otp.id
        value = STUB + key.encode() if held else encode(otp)
        yield Record(otp.id, value, f"{otp.id} {otp.recipient}", otp.expires_at,
                     otp.status is Status.PENDING)
    if state is None or before is None:
        return
    kept = {otp.id for otp in state.pending.values()}
    for otp in state_of(before).pending.values():
        if otp.id not in kept and otp.id not in listed:
            yield Record(otp.id, encode(otp), f"{otp.id} {otp.recipient}", otp.expires_at,
                         otp.status is Status.PENDING)


class Lru(Generic[K, V]):
    """A small bounded map: the least recently set entries go first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)
