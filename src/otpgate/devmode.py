"""The rules of dev mode, which needs no API key: it must not be able to send anything
for real, nor be reachable from other machines unless that is asked for.

* Dev mode runs with the capture driver only (the default): any other driver — even
  ``console://`` — would turn a keyless server into an open relay, so it refuses to start
  and says to use ``--no-dev`` with an API key instead.
* Dev mode listens on loopback only, unless ``--dev-public`` (``OTPGATE_DEV_PUBLIC=true``)
  lets it listen elsewhere; then it warns, loudly, at every start.
"""

from __future__ import annotations

import ipaddress

from otpgate import urls
from otpgate.config import Settings
from otpgate.errors import ConfigurationError

DEV_DRIVER = "capture"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address, maybe in brackets) is this machine's
    loopback; a name other than ``localhost`` is taken for a public one."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check(settings: Settings) -> list[str]:
    """Warnings to give at start-up; ``ConfigurationError`` when dev mode would send for
    real, or listen beyond loopback without ``dev_public``."""
    if not settings.dev:
        return []
    real = sorted({urls.mask(url) for chain in settings.driver_urls.values() for url in chain
                   if urls.parse(url).scheme != DEV_DRIVER})
    if real:
        raise ConfigurationError(
            "dev mode takes requests without an API key, so it only captures messages "
            f"(capture://) and never sends them; it refuses to run with {', '.join(real)}. "
            "To send for real, run with --no-dev and an API key (otpgate keys create).")
    host = settings.server.host
    if is_loopback(host):
        return []
    if not settings.dev_public:
        raise ConfigurationError(
            f"dev mode listens on loopback only, and {host} is not: anyone who reaches it "
            "could request codes and read the dev inbox without a key. Use --host "
            "127.0.0.1, or --dev-public (OTPGATE_DEV_PUBLIC=true) if that is what you want.")
    return [f"DEV MODE IS PUBLIC: listening on {host} with --dev-public; anyone who "
            "reaches this address can request codes and read the dev inbox without a key"]
