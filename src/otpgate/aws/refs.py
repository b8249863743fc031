"""Settings given by reference: ``ssm:/path`` (an SSM parameter, decrypted) or
``secretsmanager:NAME`` (a secret's string), resolved once, at cold start.

On AWS the secret key and the driver URLs with credentials are given this way, so that no
secret sits in a function's environment. ``OTPGATE_DRIVERS_*`` lists may mix URLs and
references (``ssm:/otpgate/prod/twilio,console://``); a parameter may itself hold a
comma-separated list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from otpgate.aws.clients import Clients
from otpgate.errors import ConfigurationError

SSM = "ssm:"
SECRETS = "secretsmanager:"
_LISTS = "OTPGATE_DRIVERS_"


_REF = re.compile(r"(ssm:[A-Za-z0-9_./-]+|secretsmanager:[A-Za-z0-9/_+=.@-]+)", re.ASCII)


def _is_ref(value: str) -> bool:
    """Whether ``value`` names a parameter or a secret (and is not text that merely
    starts like one)."""
    return _REF.fullmatch(value) is not None


def references(env: Mapping[str, str]) -> dict[str, list[str]]:
    """``OTPGATE_*`` variables → the parts of their value (one, or a driver list's)."""
    found = {}
    for name, value in env.items():
        if not name.startswith("OTPGATE_"):
            continue
        parts = [p.strip() for p in value.split(",")] if name.startswith(_LISTS) else [value]
        if any(_is_ref(p) for p in parts):
            found[name] = parts
    return found


async def resolve(env: Mapping[str, str], clients: Clients) -> dict[str, str]:
    """``env`` with every reference in an ``OTPGATE_*`` value replaced by what it names;
    ``ConfigurationError`` naming a reference that cannot be read (never its value)."""
    refs = references(env)
    wanted = {p for parts in refs.values() for p in parts if _is_ref(p)}
    values: dict[str, str] = {}
    parameters = sorted(p for p in wanted if p.startswith(SSM))
    if parameters:
        values |= await _parameters(clients, parameters)
    for ref in sorted(p for p in wanted if p.startswith(SECRETS)):
        values[ref] = await _secret(clients, ref)
    resolved = dict(env)
    for name, parts in refs.items():
        resolved[name] = ",".join(values.get(p, p) for p in parts)
    return resolved


async def _parameters(clients: Clients, refs: list[str]) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    ssm = await clients.get("ssm")
    values: dict[str, str] = {}
    for start in range(0, len(refs), 10):  # GetParameters takes ten names a call
        chunk = {ref[len(SSM):]: ref for ref in refs[start:start + 10]}
        try:
            answer = await ssm.get_parameters(Names=list(chunk), WithDecryption=True)
        except (BotoCoreError, ClientError) as exc:
            raise ConfigurationError(f"cannot read SSM parameters {sorted(chunk)}: "
                                     f"{type(exc).__name__}") from None
        if missing := answer.get("InvalidParameters"):
            raise ConfigurationError(f"no SSM parameter {missing[0]!r}")
        for parameter in answer["Parameters"]:
            values[chunk[parameter["Name"]]] = parameter["Value"]
    return values


async def _secret(clients: Clients, ref: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    manager = await clients.get("secretsmanager")
    try:
        answer = await manager.get_secret_value(SecretId=ref[len(SECRETS):])
    except (BotoCoreError, ClientError) as exc:
        raise ConfigurationError(f"cannot read secret {ref[len(SECRETS):]!r}: "
                                 f"{type(exc).__name__}") from None
    if "SecretString" not in answer:
        raise ConfigurationError(f"secret {ref[len(SECRETS):]!r} holds no string")
    return str(answer["SecretString"])
