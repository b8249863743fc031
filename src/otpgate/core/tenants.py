"""Tenants: every API key belongs to one, and everything a key touches is the tenant's own.

OTPs carry their tenant; a recipient's state (limits, failures, locks) is keyed by tenant
and recipient together; idempotent answers are kept per tenant. Another tenant's OTP id is
answered as unknown. Keyless dev mode is the ``default`` tenant, as is every key made
without ``--tenant``.
"""

from __future__ import annotations

import re

from otpgate.errors import InvalidRequest

DEFAULT = "default"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}", re.ASCII)


def parse(name: object) -> str:
    """A tenant name: 1 to 64 of ``[a-z0-9_.-]``, starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest("a tenant is 1 to 64 of [a-z0-9_.-], starting with a letter "
                             "or a digit", "tenant")
    return name
