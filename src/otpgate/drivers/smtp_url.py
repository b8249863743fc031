"""The ``smtp://`` driver's URL, read into where and how to connect: the server, its TLS
(``starttls``, ``tls`` or ``none`` — the last only to loopback unless
``allow_plaintext=true``), the trusted CAs, the credentials and the sender. See
``otpgate.drivers.smtp`` for the options."""

from __future__ import annotations

import email.utils
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from email.headerregistry import Address

from otpgate.drivers import http
from otpgate.drivers.base import COMMON_OPTIONS
from otpgate.errors import ConfigurationError
from otpgate.urls import Url

DEFAULT_CONNECTIONS = 10
_OPTIONS = frozenset({"from", "tls", "ca_file", "timeout", "connections", "helo",
                      "allow_plaintext"})
_USAGE = ("smtp://USER:PASS@HOST[:PORT]?from=ADDRESS[&tls=starttls|tls|none]"
          "[&ca_file=PEM] (see the driver table)")
_PORTS = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True, slots=True)
class Server:
    """Where and how to connect (no secrets)."""

    host: str
    port: int
    tls: str
    """``starttls``, ``tls`` or ``none``."""
    context: ssl.SSLContext | None
    helo: str
    timeout: float


def read(url: Url) -> tuple[Server, str | None, str | None, Address, int]:
    """The server, user, password, sender and pool size an ``smtp://`` URL names;
    ``ConfigurationError`` (never showing the password) when it is not usable."""
    url.check_options(_OPTIONS | COMMON_OPTIONS, _USAGE)
    options = {k: v for k, v in url.query.items() if k not in COMMON_OPTIONS}
    server = _server(url, options)
    raw_sender = options.get("from") or (url.user if url.user and "@" in url.user else None)
    if not raw_sender:
        raise ConfigurationError(f"the smtp driver needs from=; its URL is {_USAGE}")
    if (url.user is None) != (url.password is None):
        raise ConfigurationError("smtp:// takes both a user and a password, or neither")
    return (server, url.user or None, url.password or None, _sender(raw_sender),
            int(options.get("connections", DEFAULT_CONNECTIONS)))


def _sender(raw: str) -> Address:
    name, address = email.utils.parseaddr(raw)
    local, at, domain = address.rpartition("@")
    if not at or not local or ("." not in domain and domain != "localhost"):
        raise ConfigurationError("smtp:// from= must be an e-mail address, or 'Name <address>'")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except ValueError:
        raise ConfigurationError("smtp:// from= is not a valid address") from None


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    if ca_file is not None and not os.path.isfile(ca_file):
        raise ConfigurationError("smtp:// ca_file= names no readable file")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError):
        raise ConfigurationError("smtp:// ca_file= is not a PEM file of certificates") \
            from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _server(url: Url, options: dict[str, str]) -> Server:
    tls = options.get("tls") or ("tls" if url.port == 465 else "starttls")
    if tls not in _PORTS:
        raise ConfigurationError("smtp:// tls= is one of starttls, tls, none")
    if not url.host or url.path not in ("", "/"):
        raise ConfigurationError(f"the smtp driver's URL is {_USAGE}")
    plaintext_ok = options.get("allow_plaintext", "false").lower()
    if plaintext_ok not in ("true", "false"):
        raise ConfigurationError("smtp:// allow_plaintext= is true or false")
    if tls == "none" and not _loopback(url.host) and plaintext_ok != "true":
        raise ConfigurationError(
            "smtp:// tls=none sends the password and the codes in clear: it is for a relay "
            "on loopback; add allow_plaintext=true to use it elsewhere on purpose")
    if tls == "none" and "ca_file" in options:
        raise ConfigurationError("smtp:// ca_file= needs tls=starttls or tls=tls")
    connections = options.get("connections", str(DEFAULT_CONNECTIONS))
    if not connections.isascii() or not connections.isdigit() or \
            not 1 <= int(connections) <= 100:
        raise ConfigurationError("smtp:// connections= is a whole number from 1 to 100")
    return Server(
        host=url.host, port=url.port or _PORTS[tls], tls=tls,
        context=None if tls == "none" else _tls_context(options.get("ca_file")),
        helo=options.get("helo") or socket.gethostname() or "localhost",
        timeout=http.timeout_of(options))
