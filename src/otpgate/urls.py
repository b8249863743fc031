"""Backend and driver URLs: one parser and one masker for every scheme.

``scheme://[user[:password]@]host[:port][/path][?query]``, where, unlike ``urlsplit``'s
``hostname``, the host keeps its case and its ``+`` (``twilio://SID:TOKEN@+15550001111``,
``@MG…`` messaging services, alphanumeric senders) and every part is percent-decoded
(a secret may hold ``@`` or ``:`` written ``%40`` and ``%3A``). A user without a password is
a secret on its own (``clickatell://API_KEY@``). The last value of a repeated query option
wins.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from otpgate.errors import ConfigurationError

SECRET_OPTIONS = ("token", "secret", "password", "pass", "key", "signature", "auth",
                  "credential")
"""Query options whose value is hidden by ``mask`` (by substring of their name)."""
MASK = "***"


@dataclass(frozen=True, slots=True)
class Url:
    """A parsed URL; ``repr`` and ``masked`` never show its secrets."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    path: str
    query: dict[str, str] = field(default_factory=dict)
    raw: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"Url({self.masked!r})"

    @property
    def masked(self) -> str:
        return mask(self.raw)

    def option(self, name: str, default: str | None = None) -> str | None:
        return self.query.get(name, default)

    def check_options(self, allowed: Iterable[str], usage: str) -> None:
        """``ConfigurationError`` naming ``usage`` if the query holds an unknown option."""
        if unknown := set(self.query) - set(allowed):
            raise ConfigurationError(
                f"{self.scheme}:// does not know the options {sorted(unknown)}; {usage}")


def parse(raw: str) -> Url:
    """Parse ``raw``; ``ConfigurationError`` (with the URL masked) when it is not a URL."""
    if not isinstance(raw, str) or "://" not in raw:
        raise ConfigurationError(f"not a URL: {mask(str(raw))!r}")
    parts = urlsplit(raw)
    if not parts.scheme:
        raise ConfigurationError(f"a URL needs a scheme: {mask(raw)!r}")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        user = unquote(name)
        password = unquote(secret) if colon else None
    host, port = _split_port(hostport, raw)
    try:
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    except ValueError as exc:
        raise ConfigurationError(f"bad query in {mask(raw)!r}: {exc}") from None
    return Url(scheme=parts.scheme.lower(), user=user, password=password,
               host=unquote(host), port=port, path=unquote(parts.path), query=query, raw=raw)


def _split_port(hostport: str, raw: str) -> tuple[str, int | None]:
    if hostport.startswith("["):  # [::1]:6379
        inside, _, rest = hostport[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return inside, int(rest[1:])
        return inside, None
    if "," in hostport:  # seed lists (redis+cluster://a:1,b:2) are read by their backend
        return hostport, None
    head, colon, tail = hostport.rpartition(":")
    if colon and tail.isascii() and tail.isdigit():
        port = int(tail)
        if not 0 < port < 65536:
            raise ConfigurationError(f"bad port in {mask(raw)!r}")
        return head, port
    return hostport, None


def mask(url: str) -> str:
    """``url`` with its password (or lone user), and the values of secret-looking query
    options, replaced by ``***``; a URL without secrets comes back unchanged."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}" if colon else MASK
    netloc = f"{userinfo}@{host}" if at else host
    query = "&".join(
        f"{name}={MASK}" if is_secret_option(name) else f"{name}{eq}{value}"
        for name, eq, value in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def is_secret_option(name: str) -> bool:
    lowered = name.lower()
    return any(s in lowered for s in SECRET_OPTIONS)


def is_loopback(host: str) -> bool:
    """``localhost``, or an address in 127.0.0.0/8 or ``::1``: where plain http stays on
    this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, lowercased; ``None`` if it is not one (a web
    origin: http or https, no user, nothing after the host but a port)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()
