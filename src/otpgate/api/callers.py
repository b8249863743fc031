"""Who a request comes from, as the abuse rules count it (``otpgate.abuse.guard.Requester``).

A client key (safe in an app) is limited by the address it connects from — the peer's,
or, behind proxies listed in ``OTPGATE_TRUSTED_PROXIES``, the last address of
``X-Forwarded-For`` that is not one of them; a ``client_ip`` it sends is ignored. A server
key speaks for its users: it may pass the end user's address as ``client_ip`` and its own
keys as ``rate_keys``; without ``client_ip`` no address rule applies to it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from litestar.connection import ASGIConnection

from otpgate import apikeys
from otpgate.abuse.guard import Requester
from otpgate.api.auth import Caller
from otpgate.errors import InvalidRequest

MAX_RATE_KEYS = 8
RATE_KEY_NAME = re.compile(r"[a-z0-9_]{1,32}", re.ASCII)
MAX_RATE_KEY_VALUE = 256
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_client_key(who: Caller) -> bool:
    """Whether ``who`` holds a client key (request and verify only; limited per address)."""
    return who.kind == apikeys.CLIENT


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def peer_address(connection: ASGIConnection[Any, Any, Any, Any],
                 proxies: tuple[str, ...]) -> str | None:
    """The caller's address: the peer's, unless it is a trusted proxy, then the last
    untrusted address its ``X-Forwarded-For`` names."""
    client = connection.scope.get("client")
    peer = client[0] if client else None
    networks = _networks(proxies)
    if peer is None or not networks or not _trusted(peer, networks):
        return peer
    # Every line of the header, in order: a proxy that adds a line of its own leaves a
    # line the client wrote first.
    forwarded = ",".join(connection.headers.getall("x-forwarded-for", []))
    hops = [h.strip() for h in forwarded.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, networks):
            return hop if _valid_ip(hop) else peer
    return peer


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def client_ip(value: object) -> str | None:
    """A server key's ``client_ip``: an IPv4 or IPv6 address."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 45 or not _valid_ip(value):
        raise InvalidRequest("client_ip must be an IPv4 or IPv6 address", "client_ip")
    return str(ipaddress.ip_address(value))


def rate_keys(value: object) -> Mapping[str, str]:
    """A server key's ``rate_keys``: up to 8 names (``[a-z0-9_]{1,32}``) with printable
    values of at most 256 characters."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_RATE_KEYS or not all(
            isinstance(k, str) and RATE_KEY_NAME.fullmatch(k) and isinstance(v, str)
            and 1 <= len(v) <= MAX_RATE_KEY_VALUE and v.isprintable()
            for k, v in value.items()):
        raise InvalidRequest(f"rate_keys must map up to {MAX_RATE_KEYS} names "
                             "([a-z0-9_]{1,32}) to printable values of 1 to "
                             f"{MAX_RATE_KEY_VALUE} characters", "rate_keys")
    return dict(value)


def requester(connection: ASGIConnection[Any, Any, Any, Any], who: Caller,
              proxies: tuple[str, ...], ip: object = None,
              keys: object = None) -> Requester:
    """The ``Requester`` of a request made by ``who`` with these body fields."""
    if is_client_key(who):
        return Requester(who.key_id, client=True, ip=peer_address(connection, proxies))
    return Requester(who.key_id, ip=client_ip(ip), rate_keys=rate_keys(keys))
