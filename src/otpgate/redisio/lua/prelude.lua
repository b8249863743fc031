-- Shared by otpgate's scripts (prepended to each). A script names its shard by KEYS[1],
-- the shard's hash tag ("{otpgate.3.17}"), and builds every key it touches from it
-- (see otpgate/redisio/keys.py), so all of them live in one hash slot; where its
-- arguments are many they come as one msgpack array, ARGV[1].
local tag = KEYS[1]

local function key(...)
  return tag .. ':' .. table.concat({...}, ':')
end

-- The OTP `id`: {record} for a finished one, {"~<recipient>", version, state} for a
-- pending one (its record is then its recipient's state), {} when there is none.
local function otp_of(id)
  local record = redis.call('GET', key('o', id))
  if not record then return {} end
  if string.sub(record, 1, 1) == '~' then
    local state = redis.call('HMGET', key('r', string.sub(record, 2)), 'v', 'b')
    return {record, state[1] or '0', state[2] or false}
  end
  return {record}
end

-- Whether the caller routed its events with the current subscriptions.
local function fresh(version)
  return (redis.call('HGET', key('subs'), '~v') or '0') == version
end

-- Publish {event, {subscription, ...}} pairs: an entry on each subscription's stream,
-- with e (the event), n (earlier deliveries), t (since when it is due: domain seconds).
local function emit(events, now)
  for _, routed in ipairs(events) do
    for _, name in ipairs(routed[2]) do
      redis.call('XADD', key('q', name), '*', 'e', routed[1], 'n', '0', 't', now)
    end
  end
end

-- The answer kept under idempotency `slot` if it is still live at `now`, else false.
local function live_answer(slot, now)
  local kept = redis.call('HMGET', key('i', slot), 'x', 'a')
  if kept[1] and tonumber(kept[1]) > tonumber(now) then return kept[2] end
  return false
end
