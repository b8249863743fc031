"""Lines that let a phone fill the code in by itself, appended to an SMS.

- ``app_hash``: Android's SMS Retriever hands a message to the app whose 11-character
  hash it contains (base64 of the app's signing certificate digest, cut to 11). Google's
  example puts it on a line of its own at the end, after a blank line.
- ``webotp_domain``: WebOTP (and Safari's one-time-code autofill) read a code only from
  a message whose last line is ``@domain #code`` — the host of the page asking for it,
  without scheme, port or path.

With both, the hash comes first: WebOTP needs its line to be the last one, and SMS
Retriever finds the hash anywhere in the message::

    Your otpgate code is 123456. It expires in 5 minutes. Don't share it.

    FA+9qCX9VSu
    @example.com #123456
"""

from __future__ import annotations

import re

from otpgate.errors import InvalidRequest

APP_HASH_PATTERN = r"[A-Za-z0-9+/]{11}"
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
WEBOTP_DOMAIN_PATTERN = rf"(?:{_LABEL}\.)*(?=[a-z0-9-]*[a-z]){_LABEL}"
"""A host name in lowercase letters, digits and hyphens (an IDN in its ``xn--`` form);
its last label is not all digits, so an IP address is not one."""
_APP_HASH = re.compile(APP_HASH_PATTERN, re.ASCII)
_WEBOTP_DOMAIN = re.compile(WEBOTP_DOMAIN_PATTERN, re.ASCII)
MAX_DOMAIN = 253


def parse_app_hash(value: object, field: str = "app_hash") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _APP_HASH.fullmatch(value):
        raise InvalidRequest(f"{field} must be the 11-character SMS Retriever hash of "
                             "the app (letters, digits, + and /), e.g. FA+9qCX9VSu", field)
    return value


def parse_webotp_domain(value: object, field: str = "webotp_domain") -> str | None:
    if value is None:
        return None
    if (not isinstance(value, str) or len(value) > MAX_DOMAIN
            or not _WEBOTP_DOMAIN.fullmatch(value)):
        raise InvalidRequest(f"{field} must be a lowercase host name such as "
                             "example.com, without scheme, port or path", field)
    return value


def with_autofill(text: str, code: str, app_hash: str | None,
                  webotp_domain: str | None) -> str:
    """``text`` with the SMS Retriever and WebOTP lines asked for, if any."""
    lines = [line for line in (app_hash, webotp_domain and f"@{webotp_domain} #{code}")
             if line]
    if not lines:
        return text
    return text.rstrip() + "\n\n" + "\n".join(lines)
