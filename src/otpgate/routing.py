"""Which drivers send a code: the chain per (recipient, channel), and the next driver when
one gives up on a send.

A chain is an ordered tuple of driver names: the first is tried, the rest are failovers.
The chain chosen for a code is kept on the OTP and travels in its dispatch events, so a
send fails over along the chain it started with even if the routes change meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from otpgate.core.recipients import Recipient
from otpgate.errors import ConfigurationError, InvalidRequest

Chain = tuple[str, ...]


class Router(Protocol):
    def channels(self) -> frozenset[str]:
        """Channels some route serves."""
        ...

    def route(self, recipient: Recipient, channel: str) -> Chain:
        """The driver chain for ``recipient`` on ``channel``; ``InvalidRequest`` when no
        driver is configured for it."""
        ...


class StaticRouter:
    """One chain per channel, whoever the recipient."""

    def __init__(self, chains: Mapping[str, Sequence[str]]) -> None:
        for channel, chain in chains.items():
            if not chain:
                raise ConfigurationError(f"the route for {channel!r} names no driver")
        self._chains = {channel: tuple(chain) for channel, chain in chains.items()}

    def channels(self) -> frozenset[str]:
        return frozenset(self._chains)

    def route(self, recipient: Recipient, channel: str) -> Chain:
        chain = self._chains.get(channel)
        if chain is None:
            raise InvalidRequest(f"no driver is configured for channel {channel!r}",
                                 "channel")
        return chain

    def table(self) -> dict[str, Chain]:
        return dict(self._chains)


def next_driver(fallbacks: Sequence[str]) -> tuple[str, list[str]] | None:
    """After a driver gave up: the driver to hand the send to, and what is left after it;
    ``None`` when the chain is spent."""
    if not fallbacks:
        return None
    return fallbacks[0], list(fallbacks[1:])
