"""Every Redis key otpgate uses, in one place.

Keys live in *shards*. A shard is a hash tag (``{otpgate.3.17}``): every key of one
recipient — its state, the records and send ledger of its OTPs, its kept idempotent
answers — and the streams its events go to share its shard, so that every script touches
one hash slot and runs unchanged on Redis Cluster. A recipient's shard is a hash of its
key modulo ``shards``; ``shards`` is part of the data layout (1 on one server, 16 on Cluster
by default) and must not change while data lives in Redis. Tags are picked so that shard
``i`` falls in the ``i``-th equal range of the 16384 Cluster slots: the shards spread evenly
over primaries that split the slots evenly (as ``redis-cli --cluster create`` does).

```
{tag}:r:<recipient>        hash   v (version), b (state), p (pending codes), t (touched)
{tag}:o:<otp id>           string the OTP record; "~<recipient>" while it is pending,
                                  its record then being the recipient's state (stored once)
{tag}:l:<otp id>           hash   send ledger, "<send no>:<channel>" -> Delivery
{tag}:due / :done          zset   pending OTPs by expiry ("<id> <recipient>") / finished ones
{tag}:touched              zset   recipients by last change (for purges)
{tag}:i:<slot>             hash   an idempotent answer: x (live until), a (answer)
{tag}:w:o:<otp id>         string where an OTP lives (its shard; only with shards > 1)
{tag}:w:i:<slot>           string where an idempotent answer lives (only with shards > 1)
{tag}:w:s:<driver>:<id>    string the send a provider's message id names
{tag}:subs                 hash   declared subscriptions -> filter; "~v" their version
{tag}:q:<subscription>     stream deliveries (e event, n earlier deliveries, t due since)
{tag}:q:<sub>:lease        zset   entry id -> lease end (the domain clock's seconds)
{tag}:q:<sub>:retry        zset   "<deliveries>:<entry id>:<event>" -> when it is due again
{tag}:q:<sub>:dead         stream dead letters (e, err, n, at)
{shard 0}:k:<key id>, :keys, :kc       API keys, their index, the key check value
{<prefix>.capture}:…       the dev inbox (one slot: it is for development)
```
"""

from __future__ import annotations

import re
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from otpgate.errors import ConfigurationError

GROUP = "otpgate"
"""The consumer group of every subscription stream (one stream, one group)."""
VERSION_FIELD = "~v"
"""The field of ``subs`` that counts declarations (writers cache the subscriptions)."""
MAX_SHARDS = 1024
_PREFIX = re.compile(r"[a-z0-9_-]{1,32}", re.ASCII)


def _tag(prefix: str, shard: int, shards: int) -> str:
    """The first tag ``{prefix.shard.n}`` whose slot lies in the shard's range of slots."""
    low = shard * REDIS_CLUSTER_HASH_SLOTS // shards
    high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    n = 0
    while not low <= key_slot(f"{prefix}.{shard}.{n}".encode()) < high:
        n += 1
    return f"{{{prefix}.{shard}.{n}}}"


class Keys:
    """Key names for one deployment (``prefix``, ``shards``)."""

    def __init__(self, prefix: str = "otpgate", shards: int = 1) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ConfigurationError("a Redis key prefix is 1 to 32 of [a-z0-9_-]")
        if not 1 <= shards <= MAX_SHARDS:
            raise ConfigurationError(f"shards must be 1 to {MAX_SHARDS}")
        self.prefix = prefix
        self.shards = shards
        self._tags = [_tag(prefix, i, shards) for i in range(shards)]
        self.capture_tag = f"{{{prefix}.capture}}"

    def shard(self, text: str) -> int:
        """The shard of a recipient key (or of any text a key is named by)."""
        return zlib.crc32(text.encode()) % self.shards if self.shards > 1 else 0

    def tag(self, shard: int) -> str:
        return self._tags[shard]

    # -- the store --------------------------------------------------------------------

    def state_prefix(self, shard: int) -> str:
        return f"{self._tags[shard]}:r:"

    def state(self, shard: int, key: str) -> str:
        return f"{self._tags[shard]}:r:{key}"

    def otp(self, shard: int, otp_id: str) -> str:
        return f"{self._tags[shard]}:o:{otp_id}"

    def ledger(self, shard: int, otp_id: str) -> str:
        return f"{self._tags[shard]}:l:{otp_id}"

    def due(self, shard: int) -> str:
        return f"{self._tags[shard]}:due"

    def done(self, shard: int) -> str:
        return f"{self._tags[shard]}:done"

    def touched(self, shard: int) -> str:
        return f"{self._tags[shard]}:touched"

    def answer(self, shard: int, slot: str) -> str:
        return f"{self._tags[shard]}:i:{slot}"

    def where_otp(self, otp_id: str) -> str:
        return f"{self._tags[self.shard(otp_id)]}:w:o:{otp_id}"

    def where_answer(self, slot: str) -> str:
        return f"{self._tags[self.shard(slot)]}:w:i:{slot}"

    def sent_as(self, driver: str, provider_id: str) -> str:
        shard = self.shard(f"{driver}\x00{provider_id}")
        return f"{self._tags[shard]}:w:s:{driver}:{provider_id}"

    def api_key(self, key_id: str) -> str:
        return f"{self._tags[0]}:k:{key_id}"

    def api_keys(self) -> str:
        return f"{self._tags[0]}:keys"

    def key_check(self) -> str:
        return f"{self._tags[0]}:kc"

    def meta(self, name: str) -> str:
        return f"{self._tags[0]}:meta:{name}"

    # -- the bus ----------------------------------------------------------------------

    def subs(self, shard: int) -> str:
        return f"{self._tags[shard]}:subs"

    def queue_prefix(self, shard: int) -> str:
        return f"{self._tags[shard]}:q:"

    def queue(self, shard: int, name: str) -> str:
        return f"{self._tags[shard]}:q:{name}"

    def leases(self, shard: int, name: str) -> str:
        return f"{self.queue(shard, name)}:lease"

    def retries(self, shard: int, name: str) -> str:
        return f"{self.queue(shard, name)}:retry"

    def dead(self, shard: int, name: str) -> str:
        return f"{self.queue(shard, name)}:dead"

    # -- the dev inbox ----------------------------------------------------------------

    def capture(self, part: str) -> str:
        return f"{self.capture_tag}:{part}"
