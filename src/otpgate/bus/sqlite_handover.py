"""Handing the leases of a consumer that is gone on to whoever claims next, in the SQLite
outbox: a consumer proven dead (``otpgate.sqlite.owners``: its lock is free), or this one
stopping with handlers it had to cancel. Its deliveries become due at once (spent ones are
then dead-lettered), and the ``on_release`` hooks — the store's send claims held by the same
owner — run in the same transaction, so that the sends go out again now rather than when
their leases run out.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence

from otpgate.clock import Clock
from otpgate.errors import BusError
from otpgate.sqlite.db import Database
from otpgate.sqlite.owners import Owners

log = logging.getLogger(__name__)

Release = Callable[[sqlite3.Connection, str, float], None]
"""Run in the transaction that hands a consumer's leases on: (connection, owner, now)."""

_HAND_ON = ("UPDATE deliveries SET lease_until = ?1 "
            "WHERE lease_owner = ?2 AND lease_until > ?1")


class Handover:
    """This consumer's lock, and the handing on of leases (see the module)."""

    def __init__(self, db: Database, clock: Clock, owner: str) -> None:
        self._db = db
        self._clock = clock
        self._owner = owner
        self._owners = Owners(db.path, owner)
        self._releases: list[Release] = []

    def on_release(self, release: Release) -> None:
        self._releases.append(release)

    def hold(self) -> None:
        """Take this consumer's lock (before its first lease)."""
        self._owners.hold()

    async def reap(self) -> int:
        """Hand on the leases of every consumer proven dead; how many deliveries moved."""
        self._owners.hold()
        gone = self._owners.dead()
        if not gone:
            return 0
        try:
            moved = await self._hand_on([g.owner for g in gone])
        except BaseException:
            Owners.forget(gone, remove=False)
            raise
        Owners.forget(gone, remove=True)
        if moved:
            log.warning("%d deliveries of %d stopped consumer(s) handed on at once", moved,
                        len(gone))
        return moved

    async def stop(self, unfinished: int) -> None:
        """This consumer stops: hand its leases back if it left ``unfinished`` handlers,
        then drop its lock (its file stays when handing back failed, so that others can
        prove it gone once the process ends)."""
        handed = True
        if unfinished:
            try:
                await self._hand_on([self._owner])
            except BusError:
                log.exception("handing back %d unfinished deliveries failed", unfinished)
                handed = False
        self._owners.release(remove=handed)

    async def _hand_on(self, owners: Sequence[str]) -> int:
        now = self._clock.now()

        def unit(conn: sqlite3.Connection) -> int:
            moved = 0
            for owner in owners:
                moved += conn.execute(_HAND_ON, (now, owner)).rowcount
                for release in self._releases:
                    release(conn, owner, now)
            return moved

        return await self._db.write(unit, BusError)
