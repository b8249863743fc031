-- A decision's change, written only over the state version it was decided on.
-- KEYS: 1 state, 2 subs, 3 due, 4 done, 5 touched, 6 answer (or the state again),
--       7.. the records, then the streams
-- ARGV: 1 expected version ('0': absent), 2 new state ('' unchanged), 3 pending codes,
--       4 now, 5 recipient, 6 subs version, 7 answer ('' none), 8 answer live until,
--       9 answer TTL in ms (clean-up only), 10 record count R,
--       R x (record, due member, expires at, '1' if pending, OTP id), then events
-- Returns {1} done, {0, version, state, answer} on a conflict, {2, answer} when an
-- answer is kept already, {-1} when the subscriptions changed.
local version = redis.call('HGET', KEYS[1], 'v') or '0'
local keeping = ARGV[7] ~= ''
if version ~= ARGV[1] then
  local answer = false
  if keeping then answer = live_answer(KEYS[6], ARGV[4]) end
  return {0, version, redis.call('HGET', KEYS[1], 'b') or false, answer}
end
if keeping then
  local kept = live_answer(KEYS[6], ARGV[4])
  if kept then return {2, kept} end
end
local records = tonumber(ARGV[10])
local events_at = 11 + records * 5
if tonumber(ARGV[events_at]) > 0 and not fresh(KEYS[2], ARGV[6]) then return {-1} end
if ARGV[2] ~= '' then
  redis.call('HINCRBY', KEYS[1], 'v', 1)
  redis.call('HSET', KEYS[1], 'b', ARGV[2], 'p', ARGV[3])
  redis.call('ZADD', KEYS[5], ARGV[4], ARGV[5])
end
for r = 0, records - 1 do
  local at = 11 + r * 5
  redis.call('SET', KEYS[7 + r], ARGV[at])
  if ARGV[at + 3] == '1' then
    redis.call('ZADD', KEYS[3], ARGV[at + 2], ARGV[at + 1])
    redis.call('ZREM', KEYS[4], ARGV[at + 4])
  else
    redis.call('ZREM', KEYS[3], ARGV[at + 1])
    redis.call('ZADD', KEYS[4], ARGV[at + 2], ARGV[at + 4])
  end
end
emit(events_at, ARGV[4])
if keeping then
  redis.call('HSET', KEYS[6], 'x', ARGV[8], 'a', ARGV[7])
  redis.call('PEXPIRE', KEYS[6], ARGV[9])
end
return {1}
