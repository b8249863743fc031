"""Redis backend URLs and key names: parsed and checked without a server."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from otpgate.errors import ConfigurationError
from otpgate.redisio.conn import connect
from otpgate.redisio.keys import Keys


@pytest.mark.parametrize(("url", "cluster", "shards"), [
    ("redis://127.0.0.1:6390/0", False, 1),
    ("rediss://:pw@cache.example:6380/2", False, 1),
    ("redis://127.0.0.1:6390/0?shards=4&prefix=tenant-a", False, 4),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000", True, 16),
    ("redis+cluster://10.0.0.1:7000?shards=64", True, 64),
    ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/1", False, 1),
])
async def test_every_redis_url_form_opens_a_client_without_connecting(
    url: str, cluster: bool, shards: int
) -> None:
    conn = connect(url, timeout=0.5)
    try:
        assert (conn.cluster, conn.keys.shards, conn.timeout) == (cluster, shards, 0.5)
    finally:
        await conn.close()


def test_a_redis_url_shows_masked_and_its_prefix_names_every_key() -> None:
    conn = connect("redis://:hunter2@127.0.0.1:6390/0?prefix=tenant-a")
    assert "hunter2" not in conn.masked_url
    assert conn.keys.state(0, "r1").startswith("{tenant-a.")


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+cluster://10.0.0.1:7000?db=3", "does not know the options"),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2", "HOST:PORT"),
    ("redis+sentinel://10.0.0.1:26379", "SERVICE"),
    ("redis://127.0.0.1:6390/0?shards=many", "whole number"),
    ("redis://127.0.0.1:6390/0?shards=0", "shards must be"),
    ("redis://127.0.0.1:6390/0?prefix=Bad%20Name", "prefix"),
])
def test_a_malformed_redis_url_is_a_configuration_error(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        connect(url)


def test_every_key_of_a_recipient_and_its_events_hash_to_one_cluster_slot() -> None:
    keys = Keys(shards=16)
    shard = keys.shard("4f2a" * 10)
    names = [keys.state(shard, "4f2a" * 10), keys.otp(shard, "otp_x"),
             keys.ledger(shard, "otp_x"), keys.due(shard), keys.done(shard),
             keys.touched(shard), keys.answer(shard, "idem:1"), keys.subs(shard),
             keys.queue(shard, "dispatch.sms"), keys.leases(shard, "dispatch.sms"),
             keys.retries(shard, "dispatch.sms"), keys.dead(shard, "dispatch.sms")]
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_the_shards_spread_evenly_over_the_slots_of_a_cluster() -> None:
    keys = Keys(shards=16)
    slots = [key_slot(keys.tag(i).encode()) for i in range(16)]
    # Shard i lies in the i-th sixteenth of the 16384 slots: three primaries holding
    # equal ranges get five or six shards each.
    assert [slot * 16 // 16384 for slot in slots] == list(range(16))
    per_primary = [sum(1 for s in slots if s * 3 // 16384 == p) for p in range(3)]
    assert sorted(per_primary) == [5, 5, 6]


async def test_a_redis_runtime_without_a_shared_secret_key_refuses_to_start(tmp_path) -> None:
    from otpgate.config import build
    from otpgate.runtime import Runtime

    settings = build({"store_url": "redis://127.0.0.1:9/0", "data_dir": tmp_path})
    with pytest.raises(ConfigurationError, match="OTPGATE_SECRET_KEY is required"):
        await Runtime.open(settings)
    assert not (tmp_path / "secret.key").exists()


def test_the_store_timeout_is_read_from_its_variable() -> None:
    from otpgate.config import from_env

    assert from_env({"OTPGATE_STORE_TIMEOUT": "0.5"}).store.timeout == 0.5
    assert from_env({}).store.timeout == 2.0
